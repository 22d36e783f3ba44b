"""What a result file records about where it was made: :func:`run_environment`, one implementation for every tool."""
import os
import platform
import subprocess


def _git_commit():
    """HEAD of the checkout this package runs from (``-dirty`` with uncommitted changes), or None."""
    root = os.path.dirname(os.path.dirname(os.path.realpath(__file__)))
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True, timeout=10)
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=root,
                               capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return None
    if commit.returncode != 0:
        return None
    return commit.stdout.strip() + ("-dirty" if dirty.stdout.strip() else "")


def _versions():
    import numpy
    import recbole
    import scipy
    import torch

    import recbole_saerec

    out = {"python": platform.python_version(), "torch": torch.__version__, "recbole": recbole.__version__,
           "numpy": numpy.__version__, "scipy": scipy.__version__, "recbole_saerec": recbole_saerec.__version__}
    try:
        import sklearn

        out["sklearn"] = sklearn.__version__
    except ImportError:
        pass
    commit = _git_commit()
    if commit:
        out["git_commit"] = commit
    return out


def _machine(device=None, label=None):
    import torch

    info = {"host": platform.node(), "platform": platform.platform(), "processor": platform.processor(),
            "cpu_count": os.cpu_count(), "torch_threads": torch.get_num_threads(),
            "cuda": torch.cuda.is_available(),
            "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
            "ld_preload": os.environ.get("LD_PRELOAD", "")}
    if device is not None:
        info["device"] = str(device)
    if torch.cuda.is_available():
        info["cuda_version"] = torch.version.cuda
    try:
        with open("/proc/cpuinfo") as f:
            names = [line.split(":", 1)[1].strip() for line in f if line.startswith("model name")]
        info["cpu_model"] = names[0] if names else ""
    except OSError:
        pass
    try:
        import psutil

        info["ram_gb"] = round(psutil.virtual_memory().total / 2**30, 1)
    except ImportError:
        pass
    from recbole_saerec.hardware import bf16_fast, cpu_capability

    # what the 'auto' speed switches (bf16_ce, intent_encode_bf16) resolve to on this machine
    info["cpu_capability"] = cpu_capability()
    info["bf16_native"] = bf16_fast(device if device is not None and str(device) != "cpu" else "cpu")
    if label:
        info["label"] = label
    return info


def run_environment(device=None, label=None):
    """What a result file records about where it was made: ``{"versions": ..., "machine": ...}``.

    ``versions``: python, torch, recbole, numpy, scipy, sklearn (when installed),
    recbole_saerec and ``git_commit`` (``-dirty`` when the checkout has uncommitted
    changes; absent outside a git checkout). ``machine``: host, platform, processor,
    CPU model and count, RAM, torch threads, GPU, ``device`` (when given) and ``label``
    (a free-text machine name, when given). One implementation for every tool.
    """
    return {"versions": _versions(), "machine": _machine(device, label)}
