"""Run a Megatron-LM training script with the kit installed, without editing it:

    PYTHONPATH=KIT torchrun <torchrun options> -m skymoe_megatron /path/to/Megatron-LM/pretrain_gpt.py <its arguments>

The script's directory goes first on sys.path (as when Python runs it directly: pretrain_gpt.py
imports gpt_builders and megatron from there), install() patches the router and wraps
train_step, then the script runs as __main__ with its own arguments.
"""

import os
import runpy
import sys

from .megatron_patch import install


def main() -> None:
    if len(sys.argv) < 2 or not sys.argv[1].endswith(".py"):
        sys.exit("usage: python -m skymoe_megatron /path/to/Megatron-LM/pretrain_gpt.py [its arguments]")
    script = os.path.abspath(sys.argv[1])
    if not os.path.isfile(script):
        sys.exit(f"skymoe_megatron: {script}: no such training script")
    sys.path.insert(0, os.path.dirname(script))
    install(os.environ.get("SKYMOE_KIT"), wrap_train_step=True)
    sys.argv = sys.argv[1:]
    runpy.run_path(script, run_name="__main__")


if __name__ == "__main__":
    main()
