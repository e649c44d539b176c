"""What each parameter does: the help text of every configuration field (`qaflow <command> --help`)."""

from __future__ import annotations

# What each parameter does (the `qaflow ... --help` text; tests/test_cli_flags.py checks every field has one).
HELP: dict[str, str] = {
    # data
    "train_file": "training data: SQuAD JSON, JSON Lines, CSV/TSV, .gz, or a datasets save_to_disk directory",
    "validation_file": "evaluation data (same formats as train_file)",
    "dataset_name": "a Hugging Face dataset (hub name, or a save_to_disk directory); replaces the files",
    "dataset_config_name": "the dataset's configuration (hub datasets with several)",
    "dataset_revision": "the dataset's git revision on the hub (branch, tag or commit; recorded with the run)",
    "test_file": "data for --do_predict (labels optional: unlabeled data gets predictions and no score)",
    "max_train_samples": "use only the first N training questions",
    "max_eval_samples": "use only the first N evaluation questions",
    "max_predict_samples": "use only the first N questions of the --do_predict / `qaflow predict` data",
    "bad_record_policy": "a malformed record: stop with its file and field, or skip it and count it",
    "split_eval_fraction": "evaluate on this share of train_file's articles instead of validation_file",
    "split_seed": "seed of the article split",
    # model
    "model_name_or_path": "checkpoint: a directory, a hub id, or `minilm` (the offline MiniLM)",
    "tokenizer_name": "tokenizer, if not the checkpoint's own",
    "model_family": "auto (from the checkpoint), or a registered family: extractive, beam, seq2seq",
    # features
    "max_seq_length": "tokens per window (question + context)",
    "doc_stride": "tokens of overlap between a context's windows",
    "pad_to_max_length": "pad every window to max_seq_length (else batches are padded to their longest row)",
    "preprocessing_num_workers": "processes that tokenise",
    "question_policy": "a question too long for a window: error before any model work, truncate, or skip",
    "max_query_length": "question tokens kept by question_policy truncate",
    # train
    "backend": "where to train: auto (the best present: cuda > ipu > cpu), or a backend: cpu, cuda, or ipu "
    "(Graphcore, its own environment)",
    "output_dir": "the model, run_qa's result files, predictions and checkpoints/ go here",
    "learning_rate": "peak AdamW learning rate",
    "num_train_epochs": "passes over the training features (ignored when max_steps > 0)",
    "max_steps": "optimizer steps (-1: from num_train_epochs)",
    "per_device_train_batch_size": "training windows per device per step",
    "per_device_eval_batch_size": "windows per forward pass when predicting",
    "gradient_accumulation_steps": "batches summed per optimizer step",
    "warmup_ratio": "share of the steps with a linear learning-rate warm-up",
    "weight_decay": "AdamW weight decay",
    "seed": "seed of the model head's initialisation and the data order",
    "bf16": "bfloat16 mixed precision (CUDA with bf16 support, or a CPU)",
    "fp16": "float16 mixed precision (CUDA only)",
    "eval_strategy": "in-training evaluation with the official metric on the eval split: no, steps or epoch "
    "(implies --do_eval)",
    "eval_steps": "steps between in-training evaluations (default: logging_steps)",
    "load_best_model_at_end": "end with the best evaluated checkpoint (needs save_strategy == eval_strategy and, "
    "for steps, save_steps a multiple of eval_steps)",
    "metric_for_best_model": "the score that picks the best checkpoint: exact_match or f1 (SQuAD v2: exact, f1, "
    "HasAns_exact, HasAns_f1, NoAns_exact, NoAns_f1, best_exact, best_f1); an `eval_` prefix is allowed",
    "greater_is_better": "whether a larger metric_for_best_model is better (default: true)",
    "early_stopping_patience": "stop training after this many evaluations without improvement (EarlyStoppingCallback)",
    "early_stopping_threshold": "the improvement of metric_for_best_model that resets the early-stopping patience",
    "save_strategy": "when to save checkpoints: steps, epoch or no",
    "save_steps": "steps between checkpoints",
    "save_total_limit": "checkpoints kept",
    "logging_steps": "steps between logged losses",
    "torch_compile": "compile the model with torch.compile",
    "torch_compile_mode": "torch.compile mode: default, reduce-overhead, max-autotune, max-autotune-no-cudagraphs",
    "torch_compile_dynamic": "let torch.compile use dynamic shapes (else fixed-size batches)",
    "group_by_length": "batch windows of similar length together (LengthGroupedSampler): fewer padded tokens; needs "
    "pad_to_max_length false",
    "device_concurrency_limit": "a Prefect global concurrency limit (one per GPU machine, limit = its GPUs) whose "
    "slot training and prediction hold: jobs on one device queue",
    "pad_to_multiple_of": "dynamic padding: round each batch's width up to a multiple of N (fewer distinct shapes; "
    "default 8 for CUDA bf16/fp16, as run_qa)",
    "packing": "sequence packing (extractive models): each batch's windows share full-width rows, each attending "
    "to itself only; about half the tokens of SQuAD windows at 384 are padding",
    "compile_cache": "reuse Inductor's compile and autotune caches stored by earlier runs with the same key",
    "dataloader_num_workers": "data loader worker processes (0: collate in the training process)",
    "report_to": "Trainer integrations: none, or mlflow (the Trainer's own callback, into tracking_uri)",
    "resume_from_checkpoint": "resume from this checkpoint directory (default: the last complete one in output_dir)",
    "overwrite_output_dir": "start afresh: delete the checkpoints in output_dir instead of resuming",
    # postprocess
    "n_best_size": "candidate answers kept per question",
    "max_answer_length": "longest answer in tokens",
    "null_score_diff_threshold": "SQuAD 2.0: answer only when the best span beats the null score by this much",
    "version_2_with_negative": "allow unanswerable questions (SQuAD 2.0); default: from the data",
    "val_max_answer_length": "seq2seq: generated tokens at most (default: max_answer_length)",
    "num_beams": "seq2seq: beams when generating",
    "calibration_file": "SQuAD 2.0 data to choose the no-answer threshold on (official best_f1_thresh), stored in "
    "the model's inference recipe",
    # ipu
    "ipu_config_name": "Graphcore IPUConfig (hub id or directory)",
    "pod_type": "IPU pod type",
    "micro_batch_size": "IPU micro batch size",
    "ipu_gradient_accumulation_steps": "IPU gradient accumulation",
    "loss_scaling": "IPU fp16 loss scaling",
    "layers_per_ipu": "IPU pipeline split: layers on each IPU",
    "ipu_python": "the interpreter of the IPU environment",
    # tracking
    "tracking_uri": "MLflow tracking URI (sqlite:///..., http://...)",
    "artifact_root": "artifact directory of a local MLflow store",
    "experiment_name": "MLflow experiment",
    "registered_model_name": "MLflow registered model",
    # evaluation
    "suite": "the evaluation suite the retrain flow scores the challenger on and promotion is gated on",
    "suites": "evaluation suites: name -> member -> {data, weight, margin, version} (params.yaml only)",
    # tune
    "study_name": "the Optuna study (outputs/tune/<study_name>/); resumed by name",
    "n_trials": "finished trials the study ends with, across resumed invocations",
    "timeout_s": "time budget of one invocation: no trial starts after it",
    "metric": "the official score the search optimises: f1 or exact_match",
    "direction": "maximize or minimize the metric",
    "sampler_seed": "TPE sampler seed",
    "pruner": "median (prune trials below the median per-epoch eval F1) or none",
    "pruner_startup_trials": "finished trials before the pruner prunes anything",
    "pruning_eval_samples": "eval questions scored at each epoch end for pruning",
    "learning_rate_range": "learning rate search range [low high] (log-uniform)",
    "batch_size_choices": "per_device_train_batch_size choices",
    "epochs_range": "num_train_epochs search range [low high] (integers)",
    "warmup_ratio_range": "warmup_ratio search range [low high]",
    "window_choices": "[max_seq_length, doc_stride] pairs to choose from (YAML, e.g. '[[128, 48], [256, 96]]')",
}
