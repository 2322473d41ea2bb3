#include "dcpkv/state_dict.h"

#include "dcpkv/core/names.h"

namespace dcpkv {

StateDict& StateDict::Set(const std::string& key, StateValue value) {
  items_[key] = std::move(value);
  return *this;
}

StateDict& StateDict::SetDict(const std::string& key, StateDict dict) {
  return Set(key, std::make_shared<StateDict>(std::move(dict)));
}

StateValue* StateDict::Find(const std::string& key) {
  auto it = items_.find(key);
  return it == items_.end() ? nullptr : &it->second;
}

const StateValue* StateDict::Find(const std::string& key) const {
  auto it = items_.find(key);
  return it == items_.end() ? nullptr : &it->second;
}

const char* StateValueKind(const StateValue& value) {
  static const char* const kKinds[] = {"tensor", "sharded tensor", "bytes", "state dict",
                                       "stateful object"};
  return kKinds[value.index()];
}

namespace {

// The value under `key` of `dict` as alternative T of StateValue (`kind` names T).
template <typename T, typename Dict>
auto GetAs(Dict& dict, const std::string& key, const char* kind)
    -> StatusOr<decltype(&std::get<T>(*dict.Find(key)))> {
  auto* value = dict.Find(key);
  if (value == nullptr) return NotFoundError("state dict has no key \"" + key + "\"");
  if (auto* v = std::get_if<T>(value)) return v;
  return InvalidArgumentError("state dict key \"" + key + "\" holds a " + StateValueKind(*value) +
                              ", not a " + kind);
}

}  // namespace

StatusOr<Tensor*> StateDict::GetTensor(const std::string& key) {
  return GetAs<Tensor>(*this, key, "tensor");
}
StatusOr<ShardedTensor*> StateDict::GetShardedTensor(const std::string& key) {
  return GetAs<ShardedTensor>(*this, key, "sharded tensor");
}
StatusOr<Bytes*> StateDict::GetBytes(const std::string& key) {
  return GetAs<Bytes>(*this, key, "bytes");
}
StatusOr<StateDict*> StateDict::GetDict(const std::string& key) {
  DCPKV_ASSIGN_OR_RETURN(std::shared_ptr<StateDict> * nested,
                         (GetAs<std::shared_ptr<StateDict>>(*this, key, "state dict")));
  if (*nested == nullptr) {
    return InvalidArgumentError("state dict key \"" + key + "\" holds a null state dict");
  }
  return nested->get();
}
StatusOr<const Tensor*> StateDict::GetTensor(const std::string& key) const {
  return GetAs<Tensor>(*this, key, "tensor");
}
StatusOr<const ShardedTensor*> StateDict::GetShardedTensor(const std::string& key) const {
  return GetAs<ShardedTensor>(*this, key, "sharded tensor");
}
StatusOr<const Bytes*> StateDict::GetBytes(const std::string& key) const {
  return GetAs<Bytes>(*this, key, "bytes");
}
StatusOr<const StateDict*> StateDict::GetDict(const std::string& key) const {
  DCPKV_ASSIGN_OR_RETURN(StateDict * nested, const_cast<StateDict*>(this)->GetDict(key));
  return nested;
}

namespace {

Status AddLeaf(const std::string& fqn, FlatValue value, FlatStateDict* out) {
  DCPKV_RETURN_IF_ERROR(ValidateFqn(fqn));
  if (!out->emplace(fqn, std::move(value)).second) {
    return InvalidArgumentError("state dict has two values for fqn \"" + fqn +
                                "\" after flattening nested dicts");
  }
  return Status::Ok();
}

Status Flatten(StateDict& dict, const std::string& prefix, FlatStateDict* out,
               std::vector<StatefulBinding>* bindings, int depth) {
  if (depth > 64) return InvalidArgumentError("state dict nesting deeper than 64 levels");
  for (auto& [key, value] : dict) {
    if (key.empty())
      return InvalidArgumentError("state dict has an empty key under \"" + prefix + "\"");
    const std::string fqn = prefix.empty() ? key : prefix + "." + key;
    Status s;
    if (auto* t = std::get_if<Tensor>(&value)) {
      s = t->Validate().WithContext("tensor \"" + fqn + "\"");
      if (s.ok()) s = AddLeaf(fqn, *t, out);
    } else if (auto* st = std::get_if<ShardedTensor>(&value)) {
      s = st->Validate().WithContext("sharded tensor \"" + fqn + "\"");
      if (s.ok()) s = AddLeaf(fqn, *st, out);
    } else if (auto* b = std::get_if<Bytes>(&value)) {
      s = AddLeaf(fqn, b, out);
    } else if (auto* nested = std::get_if<std::shared_ptr<StateDict>>(&value)) {
      if (!*nested) return InvalidArgumentError("state dict entry \"" + fqn + "\" is a null dict");
      s = Flatten(**nested, fqn, out, bindings, depth + 1);
    } else if (auto* obj = std::get_if<std::shared_ptr<Stateful>>(&value)) {
      if (!*obj) return InvalidArgumentError("state dict entry \"" + fqn + "\" is a null Stateful");
      StatusOr<StateDict> state = (*obj)->state_dict();
      if (!state.ok()) return state.status().WithContext("state_dict() of \"" + fqn + "\"");
      auto held = std::make_shared<StateDict>(std::move(state).value());
      bindings->push_back({*obj, held});
      s = Flatten(*held, fqn, out, bindings, depth + 1);
    }
    DCPKV_RETURN_IF_ERROR(s);
  }
  return Status::Ok();
}

}  // namespace

Status FlattenStateDict(StateDict& dict, FlatStateDict* out,
                        std::vector<StatefulBinding>* bindings) {
  out->clear();
  return Flatten(dict, "", out, bindings, 0);
}

}  // namespace dcpkv
