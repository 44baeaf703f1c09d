"""The graph layer every ONNX-handling stage shares: ONNX files in and out (:mod:`.io`), the metadata
contract (:mod:`.metadata`), pass helpers (:mod:`.passes`), graph queries (:mod:`.query`), TensorRT
hygiene verdicts (:mod:`.hygiene`), ``edgefuse inspect`` (:mod:`.inspect`) and ONNX Runtime sessions
(:mod:`.session`). It knows ONNX and ONNX Runtime, never PyTorch or the model classes."""
