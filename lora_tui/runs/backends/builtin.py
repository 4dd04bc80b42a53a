"""The built-in trainer (``python -m lora_tui.train``): writes its own events; stops on SIGTERM/SIGINT
after the current step, saving the LoRA and a resumable state."""

from __future__ import annotations

import sys
from pathlib import Path

from lora_tui.core import train_args
from lora_tui.core.project import Project
from lora_tui.runs.backends.base import Backend


class BuiltinBackend(Backend):
    name = "builtin"
    progress = "events"

    def command(self, project: Project, dataset_config: Path, args_config: Path,
                run_dir: Path) -> tuple[list[str], Path]:
        program = ["-m", "lora_tui.train", "--dataset_config", str(dataset_config), "--config_file",
                   str(args_config), "--run_dir", str(run_dir)]
        launch = project.launch
        if int(launch.get("num_processes", 1)) <= 1 and int(launch.get("num_machines", 1)) == 1:
            return [sys.executable, *program], project.root
        return train_args.accelerate_argv(launch, program,
                                          launcher=[sys.executable, "-m", "accelerate.commands.launch"]), project.root

    def env(self, run_dir: Path) -> dict[str, str]:
        # supervised: the trainer writes events only; the supervisor owns status.json
        return {**super().env(run_dir), "LORA_TUI_RUN_DIR": str(run_dir), "LORA_TUI_SUPERVISED": "1"}
