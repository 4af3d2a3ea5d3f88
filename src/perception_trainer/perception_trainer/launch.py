"""``perception-train --nproc-per-node N``: the N training processes of one machine, started by
torchrun's own agent running in this process.

``torchrun --nproc-per-node N -m perception_trainer.train`` starts the same processes, but its agent
answers a Ctrl-C with a traceback (``SignalException``) and exit status 1, after the ranks have said
what they kept, and a failed rank with a page of error summary. Here the agent's Ctrl-C is the
status a shell expects (130) and a failed rank is one line naming it; what the ranks print passes
through as it is (rank 0 alone says what an interrupted run kept). The agent starts each rank in a
session of its own and hands it one SIGINT of its own, so a rank sees one Ctrl-C, not two.
"""

from __future__ import annotations

import logging
import signal
from collections.abc import Sequence

from perception_core.interrupt import EXIT_INTERRUPTED, interrupted


def run_ranks(processes: int, argv: Sequence[str]) -> int | str:
    """Train ``argv`` (perception-train's options; a rank, ``distributed.is_rank()``, ignores their
    ``--nproc-per-node``) in ``processes`` ranks on this machine; -> the exit status, or the line to
    exit with."""
    from torch.distributed import run as torchrun
    from torch.distributed.elastic.multiprocessing.api import SignalException
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError

    # Its log on the way out ("Sending process ... closing signal", "failed (exitcode: 1) local_rank:
    # 0") says again what the ranks and the line below say.
    logging.getLogger('torch.distributed.elastic').setLevel(logging.CRITICAL)
    args = torchrun.parse_args(['--standalone', f'--nproc-per-node={processes}',
                                '-m', 'perception_trainer.train', *argv])
    try:
        torchrun.run(args)
    except SignalException as exc:  # Ctrl-C or a stop, handed on to the ranks, which said what they kept
        return 128 + int(exc.sigval)
    except KeyboardInterrupt:  # before the agent had put its handler in: no rank had begun to train
        return interrupted('perception-train')
    except ChildFailedError as exc:
        codes = {rank: failure.exitcode for rank, failure in sorted(exc.failures.items())}
        # The agent stops the other ranks (SIGTERM) once one has failed: those are not the cause.
        own = {rank: code for rank, code in codes.items() if code != -signal.SIGTERM} or codes
        if set(own.values()) == {EXIT_INTERRUPTED}:  # a rank was interrupted on its own
            return EXIT_INTERRUPTED
        failed = ', '.join(f'rank {rank} ' + (f'exited {code}' if code >= 0 else
                                              f'was killed by {signal.Signals(-code).name}')
                           for rank, code in own.items())
        rest = '; the other ranks were stopped' if len(own) < processes else ''
        return f'perception-train: {failed} (what it said is above){rest}'
    return 0
