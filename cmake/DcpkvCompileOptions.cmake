# Warning and sanitizer flags shared by every dcpkv target.
if(DCPKV_SANITIZE)
  add_compile_options(-fsanitize=${DCPKV_SANITIZE} -fno-omit-frame-pointer -fno-sanitize-recover=all)
  add_link_options(-fsanitize=${DCPKV_SANITIZE})
endif()

function(dcpkv_set_compile_options target)
  target_compile_options(${target} PRIVATE -Wall -Wextra -Wno-unused-parameter
    # Option structs are filled with designated initializers that leave the rest at defaults.
    -Wno-missing-field-initializers)
  if(DCPKV_WERROR)
    target_compile_options(${target} PRIVATE -Werror)
  endif()
endfunction()
