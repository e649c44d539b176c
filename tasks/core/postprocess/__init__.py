"""N-best post-processing for extractive QA: start/end logits -> answers, n-best lists and null odds.

Semantics are those of Hugging Face `utils_qa.postprocess_qa_predictions` (run_qa.py), computed with numpy over
all features at once instead of a Python loop per candidate span. Per example, over its features in order:

* feature null score = start_logits[cls] + end_logits[cls]; the example's null prediction is the feature with
  the minimum null score (the first one on ties). run_qa.py reads index 0; we read each feature's `cls_index`,
  which is 0 for right-padding (BERT-style) tokenizers and the CLS position for left-padding ones.
* candidates: the top `n_best_size` start and end indexes (the order of `np.argsort(x)[-1:-n-1:-1]`, ties
  included), skipping tokens outside the context (offsets (-1, -1)) or outside the offsets array, end < start
  and spans longer than `max_answer_length`; score = start_logit + end_logit (in the logits' dtype).
  run_qa.py's optional `token_is_max_context` check is not applied (qaflow's features never carry it).
* v2 adds the null prediction; all candidates are sorted by score, stable (ties keep generation order: feature,
  start rank, end rank, null last); the top `n_best_size` are kept and v2 re-appends the null prediction if it fell
  out (unless a kept span has char offsets (0, 0), as in run_qa.py).
* no candidate, or a single one with empty text -> an {"text": "empty"} entry (scores 0) is put first.
* probabilities: softmax over the kept scores (computed in float64, so they may differ from run_qa.py's float32
  values in the last bits). v1 answer: the first entry's text. v2: the first entry with non-empty text is the best
  non-null; score_diff = null_score - its start_logit - its end_logit (in the logits' dtype); the answer is ""
  when score_diff > null_score_diff_threshold. Where run_qa.py would raise IndexError (v2, every entry's text
  empty) we use start/end logits 0 for the best non-null and answer "".

The vectorised path is `postprocess_predictions` / `StreamingPostprocessor`; the plain per-candidate loop it is
checked against lives in `tests/oracles/nbest_loop.py` (test and benchmark oracle). Both give identical answers,
null odds, n-best order, texts, offsets and scores.

The rooms, in the order logits pass through them: `inputs` (settings, checks), `candidates` (stage 1, per
feature), `selection` (stage 2, per example: ranking, null/v2 rules, answers), `stream` (the entry points),
`results` (Postprocessed, NBestView, the JSON files). This package re-exports the public names, so callers import
from `tasks.core.postprocess`.
"""

from tasks.core.postprocess.inputs import NBestSettings, check_logit_pair, check_meta, check_unique_ids
from tasks.core.postprocess.results import NBestView, Postprocessed, write_outputs
from tasks.core.postprocess.stream import StreamingPostprocessor, postprocess_features, postprocess_predictions

__all__ = [
    "NBestSettings",
    "NBestView",
    "Postprocessed",
    "StreamingPostprocessor",
    "check_logit_pair",
    "check_meta",
    "check_unique_ids",
    "postprocess_features",
    "postprocess_predictions",
    "write_outputs",
]
