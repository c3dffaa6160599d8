"""Where a compiled search's time goes: a ``jax.profiler`` trace of one run, each XLA op's
time summed and put in one category by the source operations it fuses (its HLO metadata).

Used by ``bench/decode.py --profile``.
"""

import collections
import glob
import gzip
import json
import re
import tempfile

import jax

# First match wins: a fusion holding the vocabulary projection counts there even if it also
# holds the deep output's smaller matmuls.
CATEGORIES = (
    ("vocabulary projection and deep output (eq. 7)", r"deep_output_logits"),
    ("LSTM gate matmuls (eq. 1)", r"lstm_(embedded|hidden|context)/dot_general"),
    ("attention tanh(W_a a + W_h h) (eq. 4)", r"attention/(hidden_projection|tanh)"),
    ("attention score v·tanh (eq. 4)", r"attention/score"),
    ("context Σ α a (eq. 13)", r"recur/[a-z,]+->[a-z]+/dot_general"),
    ("attention softmax (eq. 5)", r"recur/attention/"),
    ("prepare: W_a a and c_0, h_0 (once)", r"annotation_projection|init_(cell|hidden)"),
    ("log-softmax over V", r"log_softmax"),
    ("beam bookkeeping (reorder, finished set, stop check)",
     r"take_along_axis|scatter|concatenate|/while/cond/"),
    ("top-k", r"top_k"),
    ("rest of the step (gate, LSTM nonlinearities, embedding)", r"Captioner\.step"),
    ("beam bookkeeping (reorder, finished set, stop check)", r"/while/"),
)
# XLA leaves some ops it creates without source metadata: a split dot_general, the blocks of
# a long reduction. The batched dots of the search are the context; the others count with the
# op they read, as its next stage (reductions over the logits: log-softmax; over the scores:
# the attention softmax).
_UNLABELLED_DOTS = (("context Σ α a (eq. 13)", r" dot\(.*lhs_batch_dims"),
                    ("attention score v·tanh (eq. 4)", r" dot\("))
_NEXT_STAGE = {"vocabulary projection and deep output (eq. 7)": "log-softmax over V",
               "attention score v·tanh (eq. 4)": "attention softmax (eq. 5)"}
_INSTRUCTION = re.compile(r"^\s*(?:ROOT )?%([\w.\-]+) = ")
_OPERANDS = re.compile(r"%([\w.\-]+)")
_COMPUTATION = re.compile(r"^(?:ENTRY )?%([\w.\-]+) ")
_CALLS = re.compile(r"(?:calls|to_apply|body|condition)=%([\w.\-]+)")
_OP_NAME = re.compile(r'op_name="([^"]*)"')


def op_categories(hlo_text: str) -> dict[str, str]:
    """HLO instruction name -> category, from the op_names of it and what it calls."""
    computation_ops = collections.defaultdict(list)
    instructions = {}
    computation = None
    for line in hlo_text.splitlines():
        if (match := _COMPUTATION.match(line)) and line.rstrip().endswith("{"):
            computation = match.group(1)
            continue
        if not (match := _INSTRUCTION.match(line)):
            continue
        names = _OP_NAME.findall(line)
        computation_ops[computation].extend(names)
        instructions[match.group(1)] = (names, _CALLS.findall(line), line)
    categories = {}
    for name, (names, calls, _) in instructions.items():
        text = "\n".join(names + [n for c in calls for n in computation_ops.get(c, [])])
        category = next((category for category, pattern in CATEGORIES
                         if re.search(pattern, text)), None)
        if category is not None:
            categories[name] = category
    for name, (_, _, line) in instructions.items():
        if name in categories:
            continue
        category = next((category for category, pattern in _UNLABELLED_DOTS
                         if re.search(pattern, line)), None)
        if category is None:
            read = [categories[o] for o in _OPERANDS.findall(line.split("=", 1)[1])
                    if o in categories]
            category = _NEXT_STAGE.get(read[0], read[0]) if read else "other"
        categories[name] = category
    return categories


def profile_ms(run, hlo_text: str) -> dict[str, float]:
    """Milliseconds per category of one ``run()`` (which must block), from a profiler trace;
    ops that overlap on the two threads both count."""
    categories = op_categories(hlo_text)
    with tempfile.TemporaryDirectory() as directory:
        jax.profiler.start_trace(directory, create_perfetto_trace=True)
        run()
        jax.profiler.stop_trace()
        path = glob.glob(f"{directory}/**/perfetto_trace.json.gz", recursive=True)[0]
        with gzip.open(path) as file:
            trace = json.load(file)
    events = trace["traceEvents"] if isinstance(trace, dict) else trace
    totals = collections.Counter()
    for event in events:
        if event.get("ph") == "X" and event.get("name") in categories:
            totals[categories[event["name"]]] += event.get("dur", 0) / 1e3
    return {category: round(ms, 1) for category, ms in totals.most_common()}
