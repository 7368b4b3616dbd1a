"""This process's resident memory from ``/proc`` (Linux), for the scripts' memory workers."""


def rss_bytes(field: str) -> int:
    """``field`` of ``/proc/self/status`` in bytes: ``VmRSS`` (now) or ``VmHWM`` (the peak)."""
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
    raise RuntimeError(f"{field} not found in /proc/self/status")


def reset_peak() -> None:
    """Reset the peak (``VmHWM``) to the current resident size."""
    with open("/proc/self/clear_refs", "w") as fh:
        fh.write("5")
