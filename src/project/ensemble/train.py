"""Train N member configs together: one vectorised forward/backward and one AdamW step per step.

    from project.ensemble.train import train_ensemble
    results = train_ensemble([(cfg_0, run_dir_0), (cfg_1, run_dir_1), ...])

Each ``cfg`` is a full, composed run config (what ``project.train.run.train`` receives); all
must share ``members.group_key`` and pass ``members.unsupported``. What a member gets is what the
same config trained alone gets: the net initialised under ``L.seed_everything(seed)`` after
building the task (the normal path's order), its own split (``data.split_seed``) and batch order
(``data.shuffle_seed``), its own lr, weight decay and scheduler, the LitCausalLM's loss
(token-weighted cross-entropy, ``loss_dtype``) and AdamW's update in the same float operations
(``stacked.StackedAdamW``). Gradients do not mix: the summed loss's gradient with respect to one
member's parameters is that member's own. ``tests/ensemble/test_equivalence.py`` checks the final
weights against single runs.

Per member, in its run dir: ``resolved_config.yaml``, ``csv_logs/metrics.csv`` (the CSV
logger's rows: ``lr`` at each epoch start, ``train/*`` each epoch, ``val/*`` at the validation
cadence and the last epoch), ``checkpoints/epoch_NNNNNN.ckpt`` snapshots and ``last.ckpt``
(``project.checkpoint.load_checkpoint`` loads them; written by ``AtomicCheckpointIO``, with the
integrity hash) and ``summary.json`` in the single run's shape. A member whose train loss turns
non-finite stops there like a single run (no summary, last good checkpoint kept) while the
others go on.
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from project.checkpoint import snapshot_name
from project.data.base import IGNORE_INDEX, DeviceBatches
from project.ensemble.members import MemberLog, group_key, unsupported, write_summary
from project.ensemble.resume import net_state, read_resume, restore_log, restore_schedule
from project.ensemble.stacked import StackedAdamW, StackedNets
from project.summary import task_words

Member = tuple[DictConfig, Path]  # composed config, run dir


class _Member:
    """One member's task, module (for its hyper-parameters), schedule and log."""

    def __init__(self, cfg: DictConfig, run_dir: Path) -> None:
        import lightning as L

        from project.build import fill_net_sizes, instantiate_task
        from project.lit_module import build

        self.cfg, self.run_dir = cfg, Path(run_dir)
        L.seed_everything(int(cfg.seed), workers=False, verbose=False)
        self.task = instantiate_task(cfg)
        fill_net_sizes(cfg, self.task)
        self.module = instantiate(cfg.model)  # the net initialised as the normal path does
        self.hparams = dict(self.module.hparams)
        # the member's lr schedule: its own optimiser partial and scheduler on a dummy parameter
        self._dummy = torch.nn.Parameter(torch.zeros(1))
        self.optimizer = build(self.module.optimizer_factory, params=[self._dummy])
        self.scheduler = None
        if self.module.scheduler_factory is not None:
            self.scheduler = build(self.module.scheduler_factory, optimizer=self.optimizer)
        group = self.optimizer.param_groups[0]
        self.initial_lr = float(group.get("initial_lr", group["lr"]))
        self.betas, self.eps = tuple(group["betas"]), float(group["eps"])
        self.weight_decay = float(group["weight_decay"])
        callbacks = cfg.get("callbacks") or {}
        threshold = OmegaConf.select(cfg, "callbacks.run_summary.threshold", default=0.99)
        summary = OmegaConf.select(cfg, "callbacks.run_summary", default=None) or {}
        names = task_words(summary.get("reached_as"), summary.get("train_reached_as"))
        self.log = MemberLog(self.run_dir, float(threshold), names)
        self.snap = callbacks.get("snapshots") or {}
        self.last = callbacks.get("last_checkpoint") or {}
        self.diverged: str | None = None

    @property
    def lr(self) -> float:
        return float(self.optimizer.param_groups[0]["lr"])

    def step_schedule(self) -> None:
        if self.scheduler is not None:
            self.optimizer.step()  # no gradient: a no-op that keeps torch's order check quiet
            self.scheduler.step()

    def batches(self, split: str, epoch_fn: Any) -> DeviceBatches:
        tokens, labels = self.task.splits()[split]
        if split == "train":
            data = self.cfg.data
            return DeviceBatches(
                tokens, labels, self.task.batch_size, self.task.shuffle,
                int(data.get("shuffle_seed", 0)), epoch_fn=epoch_fn,
            )  # fmt: skip
        return DeviceBatches(tokens, labels, self.task.eval_batch_size)


def _loss_and_counts(
    nets: StackedNets, tokens: torch.Tensor, labels: torch.Tensor, last_only: bool, dtype: Any
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``tokens, labels [N, b, pos]`` -> per-member mean loss, correct, supervised ``[N]`` each
    (LitCausalLM.loss_and_correct, member by member)."""
    if last_only:
        logits, labels = nets.logits(tokens, last_only=True), labels[:, :, -1]  # [N, b, d]
    else:
        logits, labels = nets.logits(tokens).flatten(1, 2), labels.flatten(1, 2)
    supervised = labels != IGNORE_INDEX
    count = supervised.sum(1)
    flat = F.cross_entropy(
        logits.to(dtype).flatten(0, 1), labels.flatten(), ignore_index=IGNORE_INDEX,
        reduction="none",
    ).view(labels.shape)  # fmt: skip
    loss = flat.sum(1) / count.clamp(min=1)
    correct = ((logits.argmax(-1) == labels) & supervised).sum(1)
    return loss, correct, count


def _check_group(members: Sequence[Member]) -> None:
    """Every member trainable, and all alike but for ensemble-able values and their run dirs."""
    keys = {group_key(c).replace(str(d), "<run_dir>") for c, d in members}
    configs = [cfg for cfg, _ in members]
    if len(keys) != 1:
        raise ValueError("members differ in more than ensemble-able values (members.group_key)")
    for cfg in configs:
        if why := unsupported(cfg):
            raise ValueError(f"config cannot be an ensemble member: {'; '.join(why)}")


def _checkpoint(
    m: _Member, i: int, nets: StackedNets, epoch: int, step: int, full: dict[str, Any] | None
) -> dict[str, Any]:
    """A Lightning-shaped checkpoint of member ``i`` (``epoch``: 0-based index of the last
    epoch run, as Lightning writes it); ``full``: optimiser/scheduler/callback state."""
    import lightning

    ckpt: dict[str, Any] = {
        "epoch": epoch, "global_step": step, "pytorch-lightning_version": lightning.__version__,
        "state_dict": {f"net.{k}": v for k, v in nets.member_state_dict(i).items()},
        "hparams_name": None, "hyper_parameters": m.hparams,
        "ensemble": {"member": i, "members": nets.n},
    }  # fmt: skip
    return {**ckpt, **(full or {})}


def _save(m: _Member, name: str, ckpt: dict[str, Any]) -> None:
    from project.callbacks.checkpoints import AtomicCheckpointIO

    dirpath = Path(str(m.last.get("dirpath") or m.snap.get("dirpath") or m.run_dir / "checkpoints"))
    AtomicCheckpointIO().save_checkpoint(ckpt, dirpath / name)


def train_ensemble(
    members: Sequence[Member],
    device: str | None = None,
    resume_from: Sequence[Path | None] | None = None,
) -> list[dict[str, Any]]:
    """Train ``members`` together; returns each member's ``summary.json`` dict (empty for a
    member that diverged). ``device``: default the first config's trainer accelerator (cuda when
    available for ``auto``). ``resume_from``: each member's ``last.ckpt`` (``resume.read_resume``
    decides whether the group resumes). SIGTERM: the epoch finishes, every member's ``last.ckpt``
    and a ``preempted`` summary are written, then ``SystemExit(143)``."""
    _check_group(members)
    from project.loggers import redact_secrets
    from project.train.threads import limit_threads_per_job

    limit_threads_per_job()  # TORCH_NUM_THREADS, as for single runs

    ms = [_Member(cfg, run_dir) for cfg, run_dir in members]
    ckpts = read_resume(resume_from or [])
    for m, ckpt in zip(ms, ckpts or [], strict=False):
        m.module.net.load_state_dict(net_state(ckpt))
        restore_schedule(m.optimizer, m.scheduler, ckpt)
        restore_log(m.log, ckpt)
    for m in ms:
        m.run_dir.mkdir(parents=True, exist_ok=True)
        text = redact_secrets(OmegaConf.to_yaml(m.cfg, resolve=True))
        (m.run_dir / "resolved_config.yaml").write_text(text)
    first = ms[0]
    if len({(m.betas, m.eps) for m in ms}) != 1:
        raise ValueError("members differ in AdamW betas/eps (only lr and weight_decay may)")
    accel = str(OmegaConf.select(first.cfg, "trainer.accelerator", default="auto"))
    dev = torch.device(device or ("cuda" if accel in ("auto", "gpu", "cuda") and
                                   torch.cuda.is_available() else "cpu"))  # fmt: skip
    nets = StackedNets([m.module.net.to(dev) for m in ms])
    opt = StackedAdamW(nets.parameters(), [m.weight_decay for m in ms], first.betas, first.eps)
    for i, ckpt in enumerate(ckpts or []):
        opt.load_member_state(i, ckpt["optimizer_states"][0])
    start = int(ckpts[0]["epoch"]) + 1 if ckpts else 0
    names = list(nets.params)
    last_only = bool(getattr(first.task, "last_position_only", False))
    dtype = first.module.loss_dtype
    trainer_cfg = first.cfg.trainer
    max_epochs, every_val = int(trainer_cfg.max_epochs), int(trainer_cfg.check_val_every_n_epoch)
    snap_every = int(first.snap.get("every_n_epochs", 0) or 0) if first.snap else 0
    last_every = int(first.last.get("every_n_epochs", 0) or 0) if first.last else 0
    epoch_box = [0]
    train_batches = [m.batches("train", lambda: epoch_box[0]) for m in ms]
    val_batches = [m.batches("val", lambda: 0) for m in ms]
    n, started = len(ms), time.perf_counter()
    step = int(ckpts[0]["global_step"]) if ckpts else 0
    if ckpts:
        print(f"ensemble: {n} members resumed after epoch {start}", flush=True)
    preempted = _catch_sigterm()

    def stacked(batches: list[DeviceBatches]) -> Any:
        for parts in zip(*batches, strict=True):
            yield (torch.stack([t for t, _ in parts]).to(dev),
                   torch.stack([lab for _, lab in parts]).to(dev))  # fmt: skip

    def full_state(i: int, m: _Member) -> dict[str, Any]:
        return {
            "optimizer_states": [opt.member_state_dict(i, names, m.lr, m.initial_lr)],
            "lr_schedulers": [m.scheduler.state_dict()] if m.scheduler is not None else [],
            "callbacks": {"RunSummary": m.log.callback_state()},
        }

    if snap_every and first.snap.get("save_initial", True) and not start:
        for i, m in enumerate(ms):
            _save(m, snapshot_name(0), _checkpoint(m, i, nets, 0, 0, None))
    interval = str(OmegaConf.select(first.cfg, "model.scheduler_interval", default="step"))
    epoch, stop = start - 1, False
    for epoch in range(start, max_epochs):
        epoch_box[0] = epoch
        lr_rows = [{"lr": m.lr, "step": step} for m in ms]
        sums = torch.zeros(3, n, dtype=torch.float64, device=dev)
        for tokens, labels in stacked(train_batches):
            lrs = [m.lr for m in ms]
            loss, correct, count = _loss_and_counts(nets, tokens, labels, last_only, dtype)
            opt.zero_grad()
            loss.sum().backward()
            opt.step(lrs)
            if interval == "step":
                for m in ms:
                    m.step_schedule()
            step += 1
            sums += torch.stack([loss.detach().double() * count, correct.double(), count.double()])
        if interval == "epoch":
            for m in ms:
                m.step_schedule()
        train = (sums[0] / sums[2].clamp(min=1)).tolist(), (sums[1] / sums[2].clamp(min=1)).tolist()
        validate = (epoch + 1) % every_val == 0 or epoch == max_epochs - 1
        val: tuple[list[float], list[float]] | None = None
        if validate:
            vsums = torch.zeros(3, n, dtype=torch.float64, device=dev)
            with torch.no_grad():
                for tokens, labels in stacked(val_batches):
                    loss, correct, count = _loss_and_counts(nets, tokens, labels, last_only, dtype)
                    vsums += torch.stack([loss.double() * count, correct.double(), count.double()])
            count = vsums[2].clamp(min=1)
            val = (vsums[0] / count).tolist(), (vsums[1] / count).tolist()
        stop = bool(preempted)  # read once: every member saves at the same epoch
        for i, m in enumerate(ms):
            if m.diverged:
                continue
            m.log.log(lr_rows[i])
            if val is not None:
                m.log.log({"epoch": epoch, "step": step - 1, "val/acc": val[1][i],
                           "val/loss": val[0][i]})  # fmt: skip
                m.log.track("val/acc", val[1][i], epoch + 1)
            if not math.isfinite(train[0][i]):
                m.diverged = f"non-finite train loss ({train[0][i]}) at epoch {epoch}"
                m.log.write_csv()
                continue
            m.log.log({"epoch": epoch, "step": step - 1, "train/acc": train[1][i],
                       "train/loss": train[0][i]})  # fmt: skip
            m.log.track("train/acc", train[1][i], epoch + 1)
            if snap_every and (epoch + 1) % snap_every == 0:
                _save(m, snapshot_name(epoch + 1), _checkpoint(m, i, nets, epoch, step, None))
            last = (last_every and (epoch + 1) % last_every == 0) or epoch == max_epochs - 1
            if last or stop:
                _save(m, "last.ckpt", _checkpoint(m, i, nets, epoch, step, full_state(i, m)))
                m.log.write_csv()
        if stop:
            break
    preempted.restore()
    seconds = time.perf_counter() - started
    results: list[dict[str, Any]] = []
    for m in ms:
        m.log.write_csv()
        if m.diverged:
            with (m.run_dir / "run.log").open("a") as f:
                f.write(f"error: {m.diverged}; member stopped, last good checkpoint kept\n")
            results.append({})
            continue
        extra = {"ensemble": {"members": n, "train_seconds": round(seconds, 3),
                              "pid": os.getpid(), "torch_threads": torch.get_num_threads()}}  # fmt: skip
        status = "preempted" if stop else "finished"
        results.append(write_summary(m.log, status, epoch + 1, step, extra))
    if stop:
        print(f"ensemble: SIGTERM: stopped after epoch {epoch + 1}, last.ckpt saved", flush=True)
        raise SystemExit(143)
    return results


class _Flag:
    """Truthy once SIGTERM arrived (the handler only sets it; the loop stops at the epoch end)."""

    def __init__(self) -> None:
        self.set = False
        self.previous: Any = None

    def __bool__(self) -> bool:
        return self.set

    def restore(self) -> None:
        """Put back the SIGTERM handler that was there before."""
        import signal

        if self.previous is not None:
            signal.signal(signal.SIGTERM, self.previous)


def _catch_sigterm() -> _Flag:
    import signal
    import threading

    flag = _Flag()
    if threading.current_thread() is threading.main_thread():

        def handler(signum: int, frame: Any) -> None:
            flag.set = True

        flag.previous = signal.signal(signal.SIGTERM, handler)
        # a SIGTERM noted before training began (a parallel worker's handler: ensemble.parallel)
        flag.set = bool(getattr(flag.previous, "received", False))
    return flag
