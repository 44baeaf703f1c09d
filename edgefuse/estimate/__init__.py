"""``edgefuse bench --estimate``: latency of an ONNX graph on a device profile, predicted by a roofline.

Every node gets its MACs and the bytes it moves (:func:`layer_costs`, :mod:`.costs`; shapes from one ONNX Runtime
run with every tensor exposed, so static and dynamic graphs alike), and the precision it runs in. :func:`estimate`
(:mod:`.roofline`) then charges each layer ``max(2 * MACs / peak[precision], bytes / bandwidth) + overhead`` and
sums. The peaks are the device profile's published dense figures for a GPU or Jetson, and figures measured here
(:func:`measure_cpu_peak`, :mod:`.cpu_peak`) for ``cpu``. The results are plain data (:mod:`.result`).

It is an estimate, labelled as one (``Estimate.label``), with its assumptions listed (``Estimate.assumptions``):

* published peaks are never reached by real kernels, so on a GPU the estimate is optimistic (a lower bound on time);
* the bandwidth is DRAM's: tensors small enough to stay in cache move faster than that, so memory-bound layers of
  small models are estimated pessimistically;
* what engines fuse is modelled (``fuse=True``): constant subgraphs and shape arithmetic are folded; reshapes are
  views; Q/DQ pairs disappear into the INT8 kernels, which read and write 8-bit tensors; an activation, batch norm,
  residual Add or constant scale right after a Conv/Gemm/MatMul is its epilogue (one kernel, the intermediate tensor
  never written). Any other fusion (TensorRT's horizontal merges, attention kernels) is not;
* a Q/DQ graph runs as TensorRT runs it on a GPU or Jetson (every layer after a DequantizeLinear in INT8), and as
  ONNX Runtime's CPU provider runs it on ``cpu``: a Q/DQ Conv or Gemm is INT8 there only when its output goes
  straight to a QuantizeLinear, else it runs in FP32 behind its DequantizeLinear kernels.
"""
from edgefuse.estimate.costs import layer_costs
from edgefuse.estimate.cpu_peak import measure_cpu_peak
from edgefuse.estimate.result import LABEL, Comparison, Estimate, LayerCost, LayerEstimate
from edgefuse.estimate.roofline import LAUNCH_OVERHEAD_US, compare_with_measurement, estimate

__all__ = ["LABEL", "LAUNCH_OVERHEAD_US", "Comparison", "Estimate", "LayerCost", "LayerEstimate",
           "compare_with_measurement", "estimate", "layer_costs", "measure_cpu_peak"]
