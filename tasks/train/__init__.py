"""Training: Trainer plumbing shared by every model family (`trainer`) and the hardware backends behind it.

`hardware` picks the backend (cpu | cuda | ipu), `ddp` launches data-parallel workers through torchrun, `ipu`
runs Graphcore training in its own environment (`ipu_worker`), `autotune` captures Inductor's AUTOTUNE output,
`evaluation` evaluates during training (the Trainer's `evaluate` over an Evaluator the pipeline passes in).
Which backend runs is decided in `tasks.pipeline.training` (`hardware.detect_backend`); the model family is
passed in through the `tasks.core.family.ModelFamily` protocol, so nothing here knows extractive from seq2seq.
"""
