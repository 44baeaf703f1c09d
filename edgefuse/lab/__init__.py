"""Beside the deployment pipeline: the synthetic benchmark (:mod:`.synth`), training (:mod:`.train`) and adding
trained checkpoints to the pretrained tags that ship with the models (:mod:`.zoo`). They use the pipeline; the
pipeline never imports them."""
