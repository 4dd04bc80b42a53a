"""The user's kohya-ss/sd-scripts checkout: ``accelerate launch train_network.py --config_file …``
(``sdxl_train_network.py`` when the run's base model is SDXL, told from its header).

sd-scripts writes no events, so the supervisor follows its output (see ``runs.sdscripts_log``). It
has no stop handler: SIGINT ends it with a KeyboardInterrupt after whatever it saved last.
"""

from __future__ import annotations

import os
import signal
from pathlib import Path

from lora_tui.core import model_family, train_args
from lora_tui.core.errors import LoraTuiError
from lora_tui.core.project import Project
from lora_tui.runs.backends.base import Backend, Follower

# virtual environments the usual installs make inside the checkout (kohya's guide: venv/)
VENV_NAMES = ("venv", ".venv")


def checkout_accelerate(checkout: Path) -> list[str]:
    """The checkout's own ``accelerate`` when it has a venv, else the one on PATH: sd-scripts pins
    its own versions, which rarely match the environment lora-tui runs in."""
    for name in VENV_NAMES:
        exe = checkout / name / "bin" / "accelerate"
        if exe.is_file():
            return [str(exe), "launch"]
    return ["accelerate", "launch"]


class SdScriptsBackend(Backend):
    name = "sd-scripts"
    progress = "log"
    stop_signal = signal.SIGINT
    stop_group = True  # accelerate's launcher does not pass signals on to train_network.py

    def check(self, project: Project) -> None:
        if project.sd_scripts_dir is None:
            raise LoraTuiError("backend sd-scripts needs [project] sd_scripts_dir", path=project.file,
                               hint="point it at your kohya-ss/sd-scripts checkout, or use --backend builtin")
        if not (project.sd_scripts_dir / "train_network.py").is_file():
            raise LoraTuiError("no train_network.py in the sd-scripts folder", path=project.sd_scripts_dir,
                               hint="set [project] sd_scripts_dir to a kohya-ss/sd-scripts checkout")

    def check_model(self, project: Project, model: Path | None) -> None:
        """An SDXL model needs the checkout's sdxl_train_network.py (older checkouts lack it)."""
        checkout = project.sd_scripts_dir
        if checkout is not None and model_family.is_sdxl(model) and not (checkout / train_args.SDXL_SCRIPT).is_file():
            raise LoraTuiError(f"the base model is SDXL but the sd-scripts folder has no {train_args.SDXL_SCRIPT}",
                               path=checkout, hint="update the kohya-ss/sd-scripts checkout (git pull)")

    def command(self, project: Project, dataset_config: Path, args_config: Path,
                run_dir: Path) -> tuple[list[str], Path]:
        checkout = project.sd_scripts_dir
        assert checkout is not None
        script = train_args.training_script(model_family.family_or_none(_model_in(args_config)))
        argv = train_args.launch_command(checkout / script, args_config, project.launch,
                                         launcher=checkout_accelerate(checkout))
        return argv, checkout

    def env(self, run_dir: Path) -> dict[str, str]:
        # Rich wraps its log lines at 80 columns when stderr is not a terminal: paths would be cut.
        # Offline unless the user's environment says otherwise.
        offline = {} if "HF_HUB_OFFLINE" in os.environ else {"HF_HUB_OFFLINE": "1"}
        return {**super().env(run_dir), "COLUMNS": "400", **offline}

    def follower(self) -> Follower | None:
        from lora_tui.runs.sdscripts_log import SdScriptsFollower

        return SdScriptsFollower()


def _model_in(args_config: Path) -> Path | None:
    """The base model the generated args file trains (it names the run's effective model)."""
    import tomllib

    try:
        data = tomllib.loads(args_config.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    raw = data.get("model", {}).get("pretrained_model_name_or_path")
    return Path(raw) if isinstance(raw, str) and raw else None
