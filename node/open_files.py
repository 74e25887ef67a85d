"""The node's limit on open files (POSIX getrlimit RLIMIT_NOFILE), raised as it starts to the hard limit, as Go's
runtime does for every program (Go 1.19, os package): most systems start a service with a soft limit of 1024
(systemd's LimitNOFILE=1024:524288, kept for programs that still use select()), while the API alone holds up to
MAX_CONNECTIONS connections, and MAX_BUSY more it turns away, besides libp2p's and the stores'. Under 1024, accept()
fails with EMFILE before the API's slots are all taken, so connections held open by a slow client (slowloris) keep
every other caller out, the API's eviction of the longest waiting never runs, and dials and stores fail to open too.
The node uses epoll (trio), never select(), so descriptors past 1024 are safe.
"""

from __future__ import annotations

import logging
import resource

from .api.http_server import MAX_BUSY, MAX_CONNECTIONS

log = logging.getLogger(__name__)

# Files the node opens besides the API's connections: libp2p's connections and dials, the stores, the listeners
# (an idle node holds 35), with room.
OTHER_FILES = 1024


def raise_open_files_limit(max_peers: int) -> int:
    """Raise this process's soft RLIMIT_NOFILE to its hard limit (else to what the node needs, where the hard one
    is unlimited and the system takes no such figure); warn if it stays below what the node needs. Returns it."""
    needed = MAX_CONNECTIONS + MAX_BUSY + max_peers + OTHER_FILES
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    for wanted in (hard, max(needed, soft)):
        if soft == resource.RLIM_INFINITY or wanted == resource.RLIM_INFINITY or wanted <= soft:
            continue
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))
        except (ValueError, OSError):  # macOS takes no soft limit over OPEN_MAX, an unlimited hard one included
            continue
        soft = wanted
        break
    if soft != resource.RLIM_INFINITY and soft < needed:
        log.warning(f"the node may open only {soft} files, and needs {needed} (the API's {MAX_CONNECTIONS} "
                    f"connections and {MAX_BUSY} it turns away, {max_peers} peers, its stores): past {soft}, callers "
                    "are refused, a slow one can keep every other out, and peers cannot connect; raise the limit "
                    f"(systemd: LimitNOFILE={needed}; a shell: ulimit -n {needed}; docker: --ulimit nofile={needed})",
                    extra={"fields": {"soft": soft, "hard": hard}})
    return soft
