"""A stand-in for Hugging Face's `spaces` package as it behaves on a ZeroGPU Space, for a machine without one.

The real `spaces.GPU(duration=fn)(task)` asks `fn` with the call's arguments for the seconds to request,
has ZeroGPU's scheduler lend a GPU for that long, and runs `task` in a forked worker, its arguments and
results crossing as pickles. This one does the same minus the GPU and the scheduler: it asks `fn`, writes
`{"task": name, "seconds": n}` as a JSON line to $FAKE_SPACES_LOG (make_gpu: to any recorder), and passes
arguments and results through pickle. tests/test_zerogpu.py starts app.py with this folder first on
PYTHONPATH.
"""

import inspect
import json
import os
import pickle


def make_gpu(record):
    """A `spaces.GPU` that calls `record(task name, seconds asked)` before each call."""

    def gpu(task=None, *, duration=None, size=None):
        if task is None:
            return lambda fn: gpu(fn, duration=duration, size=size)

        def ask(args, kwargs):
            record(task.__name__, duration(*args, **kwargs) if callable(duration) else duration)
            return pickle.loads(pickle.dumps((args, kwargs)))

        if inspect.isgeneratorfunction(task):

            def streamed(*args, **kwargs):
                args, kwargs = ask(args, kwargs)
                for item in task(*args, **kwargs):
                    yield pickle.loads(pickle.dumps(item))

            return streamed

        def called(*args, **kwargs):
            args, kwargs = ask(args, kwargs)
            return pickle.loads(pickle.dumps(task(*args, **kwargs)))

        return called

    return gpu


def _log(task, seconds):
    with open(os.environ["FAKE_SPACES_LOG"], "a") as out:
        out.write(json.dumps({"task": task, "seconds": seconds}) + "\n")


GPU = make_gpu(_log)
