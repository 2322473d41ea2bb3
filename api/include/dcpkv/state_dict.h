// State dicts: what a training job saves and loads.
//
// A StateDict maps names to values: dense tensors, sharded tensors, bytes entries, nested state
// dicts and Stateful objects. Nested dicts flatten to dotted fully-qualified names (fqns):
// {"model": {"layers.0.w": t}} saves t as "model.layers.0.w". Save calls state_dict() on every
// Stateful value and flattens the result under its key; load fills the tensors of that dict in
// place and then calls load_state_dict() with it.
//
// Thread safety: not thread-safe; a state dict is used by one thread at a time.
#ifndef DCPKV_STATE_DICT_H_
#define DCPKV_STATE_DICT_H_

#include <map>
#include <memory>
#include <string>
#include <variant>

#include "dcpkv/export.h"
#include "dcpkv/status.h"
#include "dcpkv/tensor.h"

namespace dcpkv {

class StateDict;

// An object that can describe its state as a StateDict and restore it from one, like
// torch.distributed.checkpoint.stateful.Stateful.
class DCPKV_EXPORT Stateful {
 public:
  virtual ~Stateful() = default;
  // Returns the state to save. Tensors should be views of the object's own memory (Tensor::Wrap)
  // so that load can fill them in place.
  virtual StatusOr<StateDict> state_dict() = 0;
  // Called by load with the dict returned by state_dict(), after it has been filled.
  virtual Status load_state_dict(const StateDict& state) = 0;
};

using StateValue = std::variant<Tensor, ShardedTensor, Bytes, std::shared_ptr<StateDict>,
                                std::shared_ptr<Stateful>>;

// "tensor", "sharded tensor", "bytes", "state dict" or "stateful object".
DCPKV_EXPORT const char* StateValueKind(const StateValue& value);

class DCPKV_EXPORT StateDict {
 public:
  StateDict() = default;

  // Inserts or replaces the value under `key`. Keys must be non-empty.
  StateDict& Set(const std::string& key, StateValue value);
  // Convenience for nesting: Set(key, std::make_shared<StateDict>(std::move(dict))).
  StateDict& SetDict(const std::string& key, StateDict dict);

  // nullptr if absent.
  StateValue* Find(const std::string& key);
  const StateValue* Find(const std::string& key) const;

  // The value under `key` as the kind asked for, to read or change in place. NOT_FOUND if
  // there is no such key; INVALID_ARGUMENT naming the key and the kind it holds otherwise.
  StatusOr<Tensor*> GetTensor(const std::string& key);
  StatusOr<ShardedTensor*> GetShardedTensor(const std::string& key);
  StatusOr<Bytes*> GetBytes(const std::string& key);
  StatusOr<StateDict*> GetDict(const std::string& key);
  StatusOr<const Tensor*> GetTensor(const std::string& key) const;
  StatusOr<const ShardedTensor*> GetShardedTensor(const std::string& key) const;
  StatusOr<const Bytes*> GetBytes(const std::string& key) const;
  StatusOr<const StateDict*> GetDict(const std::string& key) const;

  size_t size() const { return items_.size(); }
  bool empty() const { return items_.empty(); }
  auto begin() { return items_.begin(); }
  auto end() { return items_.end(); }
  auto begin() const { return items_.begin(); }
  auto end() const { return items_.end(); }

 private:
  std::map<std::string, StateValue> items_;
};

// A flattened state dict: fqn -> leaf value (Tensor, ShardedTensor or Bytes*). Tensor values are
// copies of the views (they alias the same memory); Bytes entries are pointers into the original
// dict so that load can fill them in place.
using FlatValue = std::variant<Tensor, ShardedTensor, Bytes*>;
using FlatStateDict = std::map<std::string, FlatValue>;

// Records which Stateful objects a flattening called, so load can hand them their filled dicts.
struct DCPKV_EXPORT StatefulBinding {
  std::shared_ptr<Stateful> object;
  std::shared_ptr<StateDict> state;  // what object->state_dict() returned
};

// Flattens `dict` into dotted fqns. Calls state_dict() on Stateful values (their results are
// kept in `bindings`, which must outlive `out` because Bytes pointers point into them).
// Errors: duplicate fqns after flattening, invalid fqns, invalid tensors, a failing Stateful.
DCPKV_EXPORT Status FlattenStateDict(StateDict& dict, FlatStateDict* out,
                                     std::vector<StatefulBinding>* bindings);

}  // namespace dcpkv

#endif  // DCPKV_STATE_DICT_H_
