"""Beside the deployment pipeline: the synthetic benchmark (:mod:`.synth`), training (:mod:`.train`) and the
trained zoo (:mod:`.zoo`). They use the pipeline; the pipeline never imports them."""
