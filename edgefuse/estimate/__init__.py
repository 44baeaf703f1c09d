"""``edgefuse bench --estimate``: latency of an ONNX graph on a device profile, predicted by a roofline fitted on
published measurements.

Every node gets its MACs, the bytes it moves and its precision (:func:`layer_costs`, :mod:`.costs`; shapes from one
ONNX Runtime run with every tensor exposed); nodes fused into one kernel are grouped (:mod:`.kernels`). On a GPU or
Jetson each kernel takes ``max(2 * MACs / (eta_compute * peak[precision]), DRAM bytes / (eta_memory * bandwidth)) +
overhead`` (:mod:`.model`): the peaks are the device's GPU-only dense figures (:mod:`.device`: the profile's
``gpu_*`` / ``dla_int8_tops`` fields, ``published.toml`` for what it lacks), the efficiencies and the per-kernel
overhead are fitted per device class on published latencies (MLPerf Inference, NVIDIA's torch2trt tables:
``published.toml``, :mod:`.fit`, ``fitted.toml``; ``python benchmarks/estimate_fit.py`` refits, docs/estimates.md
shows the errors), and every estimate carries its uncertainty: the largest error of its class on the published
points held out of the fit. Mixed-precision graphs are estimated layer by layer; ``target="dla"`` estimates on one
DLA core. On ``cpu`` the peaks are measured here (:func:`measure_cpu_peak`, :mod:`.cpu_peak`) and nothing is fitted.

It is an estimate, labelled as one (``Estimate.label``), with its assumptions listed (``Estimate.assumptions``):

* bytes are each kernel's inputs, weights and outputs once; activations beyond half the L2 and weights that do not
  all fit in it come from DRAM;
* what engines fuse is modelled (``fuse=True``): constant subgraphs and shape arithmetic are folded; reshapes are
  views; Q/DQ pairs disappear into the INT8 kernels, which read and write 8-bit tensors (a Q moves across a
  MaxPool); an activation, batch norm, residual Add or constant scale right after a Conv/Gemm/MatMul is its epilogue.
  Any other fusion (TensorRT's horizontal merges, attention kernels) is not;
* a Q/DQ graph runs as TensorRT runs it on a GPU or Jetson (every layer after a DequantizeLinear in INT8), and as
  ONNX Runtime's CPU provider runs it on ``cpu``: a Q/DQ Conv or Gemm is INT8 there only when its output goes
  straight to a QuantizeLinear, else it runs in FP32 behind its DequantizeLinear kernels.
"""
from edgefuse.estimate.costs import layer_costs
from edgefuse.estimate.cpu_peak import measure_cpu_peak
from edgefuse.estimate.result import LABEL, Comparison, Estimate, LayerCost, LayerEstimate
from edgefuse.estimate.roofline import LAUNCH_OVERHEAD_US, compare_with_measurement, estimate, uncertainty

__all__ = ["LABEL", "LAUNCH_OVERHEAD_US", "Comparison", "Estimate", "LayerCost", "LayerEstimate",
           "compare_with_measurement", "estimate", "layer_costs", "measure_cpu_peak", "uncertainty"]
