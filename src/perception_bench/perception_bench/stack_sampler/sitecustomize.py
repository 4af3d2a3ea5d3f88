"""CPU-weighted stack sampling of a whole Python process, started at interpreter start-up.

``perception-cameras-bench --variants sample`` puts this folder first on the node's PYTHONPATH
with PERCEPTION_STACK_SAMPLES=FILE: every 2 ms a thread here reads each other thread's CPU clock
(``time.pthread_getcpuclockid``) and its innermost Python frames, and charges the CPU used since the
last sample to that (thread name, frames); at exit FILE gets the 60 costliest, in seconds. Only
between SIGUSR1 (the bench's streaming starts) and SIGUSR2 (it ends) is charged, so start-up and
shutdown are not. Time spent in C (DDS, CUDA, the executor's C++) is charged to the Python frame
that called into it, and the CPU since the last sample to where the thread is at the sample.
Nothing happens without the variable.
"""

import atexit
import collections
import json
import os
import signal
import sys
import threading
import time

_FILE = os.environ.get('PERCEPTION_STACK_SAMPLES')
_DEPTH = 5
_INTERVAL_S = 0.002


def _where(frame):
    parts = []
    while frame is not None and len(parts) < _DEPTH:
        code = frame.f_code
        parts.append(f'{os.path.basename(code.co_filename)}:{code.co_name}:{frame.f_lineno}')
        frame = frame.f_back
    return ' < '.join(parts)


def _start(path):
    charged = collections.Counter()
    last = {}
    me = []
    window = {'open': False, 'seconds': 0.0, 'since': 0.0}

    def opened(*_):
        charged.clear()
        window.update(open=True, since=time.monotonic())

    def closed(*_):
        if window['open']:
            window.update(open=False, seconds=time.monotonic() - window['since'])

    def sample():
        me.append(threading.get_ident())
        while True:
            time.sleep(_INTERVAL_S)
            names = {t.ident: t.name for t in threading.enumerate()}
            for ident, frame in sys._current_frames().items():
                if ident == me[0]:
                    continue
                try:
                    cpu = time.clock_gettime(time.pthread_getcpuclockid(ident))
                except (OSError, OverflowError):  # the thread just ended
                    continue
                before, last[ident] = last.get(ident), cpu
                if window['open'] and before is not None and cpu > before:
                    charged[f'{names.get(ident, ident)} | {_where(frame)}'] += cpu - before

    def write():
        top = [[key, round(seconds, 4)] for key, seconds in charged.most_common(60)]
        with open(path, 'w') as out:
            json.dump({'pid': os.getpid(), 'interval_s': _INTERVAL_S, 'window_s': round(window['seconds'], 3),
                       'charged': top}, out, indent=1)

    signal.signal(signal.SIGUSR1, opened)
    signal.signal(signal.SIGUSR2, closed)
    threading.Thread(target=sample, name='stack-sampler', daemon=True).start()
    atexit.register(write)


if _FILE:
    _start(_FILE)
