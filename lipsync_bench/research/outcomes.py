"""What the research commands give back: each a document (the dict the API reads) that renders what its
command prints. Training renders on the first process only (rank 0 of a torchrun job)."""
from __future__ import annotations

import os

from ..rendering import Document, text_table


def _rank() -> int:
    return int(os.environ.get("RANK", "0"))


class PreparedFolder(Document):
    """``prepare``: the clips prepared now, those already there, those that failed with the reason.
    Exit status 1 when every clip failed."""

    def text(self) -> str:
        lines = [f"{self['out']}: {len(self['prepared'])} clips prepared, {len(self['already'])} already there, "
                 f"{len(self['failed'])} failed ({self['bytes'] / 1e6:.1f} MB; crop geometry {self['crop_geometry']})"]
        lines += [f"failed {name}: {reason}" for name, reason in self["failed"].items()]
        return "\n".join(lines + [f"skipped {problem}" for problem in self["problems"]])

    @property
    def exit_code(self) -> int:
        return 1 if self["failed"] and not (self["prepared"] or self["already"]) else 0


class ExpertTraining(Document):
    """``train-syncnet``: the clips and windows trained and validated on, each epoch's losses, the
    checkpoint."""

    def text(self) -> str:
        if _rank() != 0:
            return ""
        lines = [f"{self['config']['arch']}: {self['train_clips']} training clips ({self['train_windows']} windows), "
                 f"{self['val_clips']} validation clips ({self['val_windows']} windows), {self['layout']} layout"]
        for rec in self["history"]:
            val = (f", val loss {rec['val_loss']:.4f}, sync accuracy {rec['val_sync_acc']:.3f}, GT cos-sim "
                   f"{rec['val_gt_cos']:.3f}") if "val_loss" in rec else ""
            when = f"epoch {rec['epoch']}" if rec.get("epoch_end", True) else f"stopped in epoch {rec['epoch']}"
            lines.append(f"{when} (step {rec['step']}): train loss {rec['train_loss']:.4f}{val}")
        lines += [f"skipped {problem}" for problem in self["skipped"]]
        return "\n".join(lines + [f"checkpoint: {self['checkpoint']} (step {self['step']})"])


class GeneratorTraining(Document):
    """``train-generator`` / ``train-silent``: the data, the losses from the first to the last log row,
    what the run's expert and G_S are, the checkpoint."""

    def text(self) -> str:
        if _rank() != 0:
            return ""
        what = "G_S (silent-lip generator)" if self["kind"] == "silent" else f"G_L setup {self['config']['setup']}"
        lines = [f"{what}: {self['clips']} clips, {self['windows']} windows, {self['layout']} layout, "
                 f"step {self['step']}"]
        if self["history"]:
            first, last = self["history"][0], self["history"][-1]
            lines.append(f"pixel L1 {first['pixel']:.4f} (first {first['step']} steps) -> {last['pixel']:.4f} "
                         f"(to step {last['step']}); loss {first['loss']:.4f} -> {last['loss']:.4f}")
        if self["validation"]:
            v = self["validation"][-1]
            sync = f", expert sync {v['sync_x']:.3f} (GT {v['sync_y']:.3f})" if "sync_x" in v else ""
            lse = (f", LSE-C {v['lse_c']:.3f} / LSE-D {v['lse_d']:.3f} by the expert ({v['lse_clips']} clips)"
                   if v.get("lse_clips") else "")
            lines.append(f"validation at step {v['step']} ({self['val_windows']} windows of {self['val_clips']} "
                         f"clips): mouth L1 {v['l1_mouth']:.4f}{sync}{lse}")
            lines.append(f"best.pt: step {self['best_step']} ({self['best_criterion']} = {self['best_score']:.4f})")
        else:
            lines.append("no validation clips: no best.pt (give --val-list, or clips of two or more videos)")
        said = {"sync_expert": "the sync expert is a seeded random stand-in",
                "silent_generator": "G_S is a seeded random stand-in", "perceptual": "the perceptual loss is skipped"}
        lines += [f"note: {said[k]} (--allow-random: a smoke run)" for k in self["random_stand_ins"]]
        lines += [f"changed on resume at step {c['step']}: {c['what']} {c['before']!r} -> {c['after']!r}"
                  for c in self["changes"]]
        lines.append(f"perceptual loss: {self['perceptual']}")
        lines += [f"skipped {problem}" for problem in self["skipped"]]
        return "\n".join(lines + [f"checkpoint: {self['checkpoint']} (snapshot {self['snapshot']})"])


def _skipped_and_files(doc: dict) -> list[str]:
    return [f"skipped {problem}" for problem in doc["protocol"]["skipped"]] + ["written: " + ", ".join(doc["files"])]


class StabilityStudy(Document):
    """``stability``: per model and kind of pair (and per file list, its ``split``, when the study had
    lists), cosine similarity and lip-sync loss with their spread, beside the paper's Tab. A."""

    def text(self) -> str:
        def tab_a(r, data):
            rep = (r.get("reported") or {}).get(data)
            return f"{rep['cos_sim']:.3f} / {rep['sync_loss']:.3f}" if rep else ""

        split = any("split" in r for r in self["summary"])  # rows of a study with file lists
        lines = [text_table([[*([r["split"]] if split else []), r["model"], r["pairs"], r["samples"],
                              f"{r['cos_sim']:.3f} ± {r['cos_sim_std']:.3f}",
                              f"{r['sync_loss']:.3f} ± {r['sync_loss_std']:.3f}", tab_a(r, "train"),
                              tab_a(r, "test")] for r in self["summary"]],
                            [*(["split"] if split else []), "model", "pairs", "samples", "cos-sim ↑ (± std)",
                             "lip-sync loss ↓ (± std)", "Tab. A train", "Tab. A test"], fmt="github", numparse=True),
                 f"note: {self['reported_note']}"]
        lines += [f"skipped {problem}" for problem in self["protocol"]["skipped"]]
        if self["missing_generated"]:
            names = self["missing_generated"]
            lines.append(f"no generated video for {len(names)} GT clips (their GT pairs are counted, the generated and "
                         f"reference pairs not): {', '.join(names[:10])}" + (" …" if len(names) > 10 else ""))
        return "\n".join(lines + ["written: " + ", ".join(self["files"])])


class RobustnessStudy(Document):
    """``robustness``: per magnitude of the transform, each model's mean cosine similarity ± std."""

    def text(self) -> str:
        rows, protocol = self["rows"], self["protocol"]
        labels = list(dict.fromkeys(r["model"] for r in rows))
        mags = list(dict.fromkeys(r["magnitude"] for r in rows))
        by = {(r["magnitude"], r["model"]): (r["cos_sim"], r["cos_sim_std"]) for r in rows}
        lines = [f"{protocol['transform']} ({protocol['unit']}), mean cos-sim ± std of {protocol['windows']} GT "
                 "windows",
                 text_table([[f"{m:g}", *[f"{by[(m, lab)][0]:.3f} ± {by[(m, lab)][1]:.3f}" for lab in labels]]
                             for m in mags], ["magnitude", *labels], fmt="github", numparse=True)]
        return "\n".join(lines + _skipped_and_files(self))


class Generation(Document):
    """``generate``: the video written, its frames and how many were redrawn, the checkpoint; warnings
    go to the error stream."""

    def text(self) -> str:
        return (f"{self['out']}: {self['frames']} frames ({self['seconds']:.2f} s at 25 fps), "
                f"{self['generated_frames']} with a face redrawn; setup {self['checkpoint']['setup']}, "
                f"step {self['checkpoint']['step']}")

    @property
    def notices(self) -> list[str]:
        return [f"warning: {w}" for w in self["warnings"]]


class GeneratedFolder(Document):
    """``generate`` over folders: the clips generated now, those already there (skipped: the run is
    resumable), those that failed, one line each naming the file (``generate`` escapes control
    characters in names). Exit status 1 when any failed, so that a script notices; a rerun retries
    only those."""

    def text(self) -> str:
        frames = self["frames"]
        lines = [f"{self['out']}: {len(self['generated'])} clips generated ({frames} frames, {frames / 25:.1f} s at "
                 f"25 fps), {len(self['already'])} already there, {len(self['failed'])} failed; setup "
                 f"{self['checkpoint']['setup']}, step {self['checkpoint']['step']}"]
        lines += [f"FAILED {name}: {reason}" for name, reason in self["failed"].items()]
        return "\n".join(lines + [f"skipped {note}" for note in self["skipped"]])

    @property
    def exit_code(self) -> int:
        return 1 if self["failed"] else 0

    @property
    def notices(self) -> list[str]:
        return [f"warning: {w}" for w in self["warnings"]]
