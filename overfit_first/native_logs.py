"""TensorFlow's native start-up lines, kept out of what the stages print.

TensorFlow's C++ side writes its notices to the process's stderr (file descriptor 2): the oneDNN notice, the CPU
instruction-set notice, and absl's "All log messages before absl::InitializeLog() is called are written to
STDERR", twice per process. TF_CPP_MIN_LOG_LEVEL hides the notices written after absl's logging starts, not those
written before it (tensorflow/tensorflow#79029, abseil/abseil-cpp#1570), so `quiet` also routes file descriptor 2
through a small filter process. It drops absl-format INFO and WARNING lines (`I1205 10:00:00.000 123 port.cc:153]
...`), that absl line, the instruction-set notice's second line and one harmless ERROR line of tf.data
(`use_unbounded_threadpool`, ignored by TensorFlow itself), and passes everything else on unchanged and in
order: our messages, Python tracebacks, TensorFlow's ERROR and FATAL lines, a native crash's last words (the filter
outlives the process it filters).

TF_CPP_MIN_LOG_LEVEL=0 shows everything (`TF_CPP_MIN_LOG_LEVEL=0 dvc repro`): nothing is filtered then.
What this module does changes only what is printed, never a number: no stage lists it as a DVC dependency.
"""

from __future__ import annotations

import os
import subprocess
import sys

LEVEL = "TF_CPP_MIN_LOG_LEVEL"
FILTERED = "OVERFIT_FIRST_NATIVE_LOGS_FILTERED"  # set for the children, whose stderr is already the filtered one
# The filter: reads lines on stdin, writes the kept ones to stdout (the real stderr). It ignores SIGINT and SIGTERM
# so that a stop signal sent to the process group does not lose the stopping process's last lines: it ends when
# every writer has closed the pipe.
FILTER = r"""
import re, signal, sys
signal.signal(signal.SIGINT, signal.SIG_IGN)
signal.signal(signal.SIGTERM, signal.SIG_IGN)
notice = rb"[IW]\d{4} \d\d:\d\d:\d+\.\d+ +\d+ [\w./-]+:\d+\] "  # before absl starts: 00:00:<epoch seconds>
early = rb"WARNING: All log messages before absl::InitializeLog\(\) is called are written to STDERR"
guard = rb"To enable the following instructions: .* rebuild TensorFlow with the appropriate compiler flags\.$"
# An ERROR line that is none: tf.data's graph names an attribute this TensorFlow's op lacks, and it says itself
# "Unknown attributes will be ignored" (the augmented runs print it once; the run is unaffected).
unbounded = rb"E\d{4} [^\]]*\] NodeDef mentions attribute use_unbounded_threadpool which is not in the op definition"
drop = re.compile(b"^(?:" + notice + b"|" + early + b"|" + guard + b"|" + unbounded + b")")
out = sys.stdout.buffer
for line in sys.stdin.buffer:
    if not drop.match(line):
        out.write(line)
        out.flush()
"""


def quiet() -> None:
    """Hide TensorFlow's native INFO and WARNING lines from here on, in this process and its children; call it
    before TensorFlow is imported. Does nothing under TF_CPP_MIN_LOG_LEVEL=0 or in a child of a filtered process."""
    if os.environ.get(LEVEL) == "0" or FILTERED in os.environ:
        return
    os.environ.setdefault(LEVEL, "2")  # the lines written after absl's logging starts; the filter takes the others
    os.environ[FILTERED] = "1"
    read, write = os.pipe()
    sys.stderr.flush()
    subprocess.Popen([sys.executable, "-I", "-S", "-c", FILTER], stdin=read, stdout=2, close_fds=True)
    os.close(read)
    os.dup2(write, 2)
    os.close(write)
