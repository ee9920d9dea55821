"""The ``lipsync-bench`` command line: a group over the command families of ``lipsync_bench.commands``,
each family imported only when one of its commands runs (or ``--help`` lists them), so that the front
door starts without loading torch or any metric."""
from __future__ import annotations

import importlib

import click

#: Each family: its heading in ``--help``, its module, and its commands (name -> the command's object).
FAMILIES = {
    "Evaluate": ("evaluate_commands", {"eval": "eval_cmd", "table": "table_cmd", "compare": "compare_cmd",
                                       "report": "report_cmd", "merge": "merge_cmd", "verify": "verify_cmd",
                                       "lse": "lse_cmd"}),
    "Set up": ("setup_commands", {"metrics": "metrics_cmd", "protocols": "protocols_group", "weights": "weights_group",
                                  "calibrate": "calibrate_cmd", "demo": "demo_cmd", "faces": "faces_cmd"}),
    "Research": ("research_commands", {"prepare": "prepare_cmd", "stability": "stability_cmd",
                                       "robustness": "robustness_cmd", "generate": "generate_cmd"}),
    "Training": ("training_commands", {"train-syncnet": "train_syncnet_cmd", "train-silent": "train_silent_cmd",
                                       "train-generator": "train_generator_cmd"}),
}
_WHERE = {name: (module, attr) for module, commands in FAMILIES.values() for name, attr in commands.items()}


class FamilyGroup(click.Group):
    """The commands of ``FAMILIES``, each loaded from its family's module when asked for; ``--help`` lists
    them under their family's heading."""

    def list_commands(self, ctx):
        return list(_WHERE)

    def get_command(self, ctx, name):
        if name not in _WHERE:
            return None
        module, attr = _WHERE[name]
        return getattr(importlib.import_module(f"lipsync_bench.commands.{module}"), attr)

    def format_commands(self, ctx, formatter):
        width = formatter.width - 6 - max(len(name) for name in _WHERE)
        for heading, (_, commands) in FAMILIES.items():
            rows = [(name, self.get_command(ctx, name).get_short_help_str(width)) for name in commands]
            with formatter.section(heading):
                formatter.write_dl(rows)


@click.group(cls=FamilyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="lipsync-bench")
def main():
    """Lip-sync and visual-quality metrics for talking-face videos, with their protocol recorded.

    \b
    Typical use:
      lipsync-bench eval --gen out/wav2lip --gt data/hdtf --name wav2lip --dataset hdtf
      lipsync-bench table --dataset hdtf --paper
      lipsync-bench compare wav2lip ours --dataset hdtf
    """


if __name__ == "__main__":
    main()
