"""Training: Trainer plumbing shared by every model family (`trainer`) and the hardware backends behind it.

`hardware` parses `train.backend` into a backend object (`backends/`: cpu, cuda, ipu; `auto` = the best present),
which answers what the rest asks (precision, padding multiples, pinned memory, device figures) and picks the
launcher (`launchers`: the Trainer in this process, torchrun's data-parallel workers through `ddp`, or the IPU's
subprocess through `ipu` / `ipu_worker`, Graphcore training in its own environment). `autotune` captures
Inductor's AUTOTUNE output, `evaluation` evaluates during training (the Trainer's `evaluate` over an Evaluator the
pipeline passes in). The model family is passed in through the `tasks.core.family.ModelFamily` protocol, so
nothing here knows extractive from seq2seq.
"""
