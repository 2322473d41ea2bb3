// DCPKV_EXPORT marks the declarations libdcpkv.so exports: the public API in the installed
// headers. dcpkv is built with hidden visibility, so everything else (the layers' internals) stays
// inside the library, and no user or binding can come to depend on it.
#ifndef DCPKV_EXPORT_H_
#define DCPKV_EXPORT_H_

#if defined(__GNUC__) || defined(__clang__)
#define DCPKV_EXPORT [[gnu::visibility("default")]]
#else
#define DCPKV_EXPORT
#endif

#endif  // DCPKV_EXPORT_H_
