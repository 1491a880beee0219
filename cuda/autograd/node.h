// The backward node of an op with a C++ autograd kernel, written by hand as
// torch's generated nodes are (MulBackward0, ...), rather than through
// torch::autograd::Function: recording it costs a node and its saved
// tensors, with none of Function's general bookkeeping (the variable_info of
// every input and output, a string-keyed map of saved data), and applying it
// calls the backward formula directly. Measured on SpMV at N = 1,000 (one
// thread): a graph-recording call 8.6 us against 11.5, forward and backward
// 36 against 46 (bench/overhead.py).
//
// A node type gives its name, its number of saved tensors and of edges (the
// differentiable inputs, in order), and its backward as a function of the
// incoming gradients, which inputs need a gradient, the saved tensors
// (undefined where not saved), flags and sizes:
//
//   struct ProductBackward {
//     static constexpr const char* kName = "learnsolve::SpmvBackward";
//     static constexpr size_t kSaved = 7, kEdges = 2;
//     static variable_list backward(const variable_list& grads, const std::vector<bool>& need,
//                                   const std::vector<Tensor>& saved,
//                                   const std::vector<bool>& flags,
//                                   const std::vector<c10::SymInt>& sizes);
//   };
//
// and its autograd kernel records it with record<ProductBackward>(...).
// Compiled autograd (torch._dynamo.compiled_autograd) traces the same backward
// through compiled_args and apply_with_saved, as for torch's own nodes.
#pragma once

#include <torch/csrc/autograd/function.h>
#include <torch/csrc/autograd/functions/utils.h>
#include <torch/csrc/dynamo/compiled_autograd.h>

#include <memory>
#include <mutex>
#include <string>
#include <type_traits>
#include <vector>

#include "common.h"

namespace learnsolve {
namespace autograd {

template <typename Backward>
struct SavedNode : public torch::autograd::Node {
  std::vector<SavedVariable> saved = std::vector<SavedVariable>(Backward::kSaved);
  // Which saved tensors are the op's output: saved without their grad_fn (this
  // node; no reference cycle), which unpacking restores.
  std::vector<bool> is_output = std::vector<bool>(Backward::kSaved);
  std::vector<bool> flags;         // specialised on (compiled autograd recompiles per value)
  std::vector<c10::SymInt> sizes;  // symbolic under compiled autograd's dynamic shapes

  std::string name() const override { return Backward::kName; }

  void release_variables() override {
    std::lock_guard<std::mutex> lock(mutex_);
    for (SavedVariable& variable : saved) variable.reset_data();
  }

  variable_list apply(variable_list&& grads) override {
    std::lock_guard<std::mutex> lock(mutex_);
    return Backward::backward(grads, needs(), unpacked(), flags, sizes);
  }

  void compiled_args(torch::dynamo::autograd::CompiledNodeArgs& args) const override {
    for (size_t i = 0; i < saved.size(); ++i) args.collect(saved[i], is_output[i]);
    args.collect(flags);
    args.collect(sizes);
  }

  // As torch's generated nodes: the saved tensors and sizes swapped for the
  // compiler's proxies, and the backward called, as a pure function of packed
  // arguments, through the compiler (which traces it).
  variable_list apply_with_saved(const variable_list& grads,
                                 torch::dynamo::autograd::SwapSavedVariables& swap) override {
    for (SavedVariable& variable : saved) swap.before(variable);
    swap.before(sizes);

    const std::vector<Tensor> tensors = unpacked();
    std::vector<bool> defined;
    std::vector<Tensor> present;
    for (const Tensor& tensor : tensors) {
      defined.push_back(tensor.defined());
      if (tensor.defined()) present.push_back(tensor);
    }
    torch::dynamo::autograd::PackedArgs packed;
    packed.pack(needs());
    packed.pack(defined);
    packed.pack(present);
    packed.pack(flags);
    packed.pack(sizes);
    const std::vector<c10::IValue> args = std::move(packed).vec();
    std::vector<at::TypePtr> schema;
    for (const c10::IValue& value : args) {
      schema.push_back(value.isTensor() ? at::TensorType::get() : value.type());
    }

    const auto& compiler = torch::dynamo::autograd::getPyCompilerInterface();
    const std::string function = compiler->bind_function(
        swap.get_py_compiler(), name(), &SavedNode::apply_functional, schema);
    const auto output_metadata =
        torch::dynamo::autograd::IValuePacker<
            std::vector<std::optional<torch::autograd::InputMetadata>>>::
            pack(torch::dynamo::autograd::get_input_metadata(next_edges()));
    variable_list results = compiler->call_function(swap.get_py_compiler(), "apply_functional",
                                                    function, grads, args, output_metadata);

    for (SavedVariable& variable : saved) swap.after(variable);
    swap.after(sizes);
    return results;
  }

 private:
  std::vector<bool> needs() const {
    std::vector<bool> need(Backward::kEdges);
    for (size_t i = 0; i < Backward::kEdges; ++i) need[i] = task_should_compute_output(i);
    return need;
  }

  std::vector<Tensor> unpacked() {
    std::vector<Tensor> tensors;
    tensors.reserve(saved.size());
    for (size_t i = 0; i < saved.size(); ++i) {
      tensors.push_back(is_output[i] ? saved[i].unpack(getptr()) : saved[i].unpack());
    }
    return tensors;
  }

  // The backward of packed arguments (apply_with_saved's order).
  static variable_list apply_functional(const variable_list& grads,
                                        const std::vector<c10::IValue>& args) {
    torch::dynamo::autograd::PackedArgs packed(args);
    const auto need = packed.unpack<std::vector<bool>>();
    const auto defined = packed.unpack<std::vector<bool>>();
    const auto present = packed.unpack<std::vector<Tensor>>();
    const auto flags = packed.unpack<std::vector<bool>>();
    const auto sizes = packed.unpack<std::vector<c10::SymInt>>();
    std::vector<Tensor> tensors(defined.size());
    for (size_t i = 0, next = 0; i < defined.size(); ++i) {
      if (defined[i]) tensors[i] = present[next++];
    }
    return Backward::backward(grads, need, tensors, flags, sizes);
  }
};

// The op's device kernel, below the autograd keys: an autograd kernel's
// forward.
template <typename Signature, typename... Args>
Tensor device_kernel(const c10::TypedOperatorHandle<Signature>& op, c10::DispatchKeySet keys,
                     const Args&... args) {
  at::AutoDispatchBelowADInplaceOrView below;
  return op.redispatch(keys & c10::after_ADInplaceOrView_keyset, args...);
}

// A new node: nodes are held by c10::intrusive_ptr since torch 2.12
// (pytorch/pytorch#181782), by std::shared_ptr before (the GPU machine's 2.11).
template <typename T>
auto make_node() {
  if constexpr (std::is_same_v<decltype(torch::autograd::Edge::function),
                               std::shared_ptr<torch::autograd::Node>>) {
    return std::make_shared<T>();
  } else {
    return c10::make_intrusive<T>();
  }
}

// Records the node of Backward on output, an op's fresh output: its edges go
// to the differentiable inputs (in Backward's order), and it saves the given
// tensors (undefined ones stand for tensors not saved; the output itself may
// be one), flags and sizes.
template <typename Backward, typename... Inputs>
void record(const Tensor& output, const std::vector<Tensor>& tensors, std::vector<bool> flags,
            std::vector<c10::SymInt> sizes, const Inputs&... inputs) {
  static_assert(sizeof...(Inputs) == Backward::kEdges, "one input per edge");
  auto node = make_node<SavedNode<Backward>>();
  node->set_next_edges(torch::autograd::collect_next_edges(inputs...));
  node->flags = std::move(flags);
  node->sizes = std::move(sizes);
  torch::autograd::set_history(output, node);
  for (size_t i = 0; i < Backward::kSaved; ++i) {
    if (!tensors[i].defined()) continue;
    node->is_output[i] = tensors[i].is_same(output);
    node->saved[i] = SavedVariable(tensors[i], node->is_output[i]);
  }
}

}  // namespace autograd
}  // namespace learnsolve
