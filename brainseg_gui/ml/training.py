"""Adversarial training of the generator (the paper's method), resumable, cancellable, repeatable.

Each step: G segments a batch of augmented patches; D learns to tell (image, expert regions) from
(image, sigmoid(G(image)).detach()); G then minimises L_adv + lambda_rec * L_rec (L_rec = per-region
BCE, + soft Dice, over the deep-supervision outputs). After each epoch: validation Dice per region on
held-out cases (whole crop at the model's resolution), an atomic checkpoint in OUT_DIR/training, and
the best generator so far saved as the model directory OUT_DIR (card.json + weights.safetensors).
With `ema_decay` the run also keeps an exponential moving average of G's weights and BatchNorm
statistics (Polyak averaging, as GAN generators are commonly shipped), validated beside G and saved
each epoch in OUT_DIR/ema: a final model that needs no held-out cases to pick an epoch.
Every run also saves G as it is after each epoch in OUT_DIR/last: the model a run without held-out
cases delivers, so cross-validation can score the recipe without picking an epoch on its test cases.
The same function serves `brainseg train`, the GUI's fine-tune panel and CI-sized CPU runs.

Under `torchrun` (ml/distributed.py) the same call trains with DistributedDataParallel: each process
draws its share of every batch (`batch_size` is the global batch, split over the processes, so the
recipe and the number of steps do not change with the process count) from its own sampler seed;
DDP averages the gradients; BatchNorm statistics are averaged over the processes after each epoch
(SyncBatchNorm on GPUs); rank 0 alone validates (its Dice is broadcast so every rank takes the same
decisions) and writes the cache, checkpoints and the model directory. A plain run is unchanged.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.optim.swa_utils import AveragedModel

from brainseg_gui.core.errors import ModelError, StudyLoadError
from brainseg_gui.core.output_folder import OutputFolder
from brainseg_gui.core.progress import CancelToken, ProgressFn, no_progress
from brainseg_gui.ml import distributed, losses, train_state
from brainseg_gui.ml.checkpoint import CARD_FILE, WEIGHTS_FILE, ModelCard, load_model, save_model
from brainseg_gui.ml.dataset import build_cache, cached_files, load_cache
from brainseg_gui.ml.device import describe_device
from brainseg_gui.ml.networks import (
    DEFAULT_CONFIG,
    DEFAULT_DISCRIMINATOR,
    IN_CHANNELS,
    OUT_CHANNELS,
    build_discriminator,
    build_generator,
    check_output_prior,
    set_output_prior,
)
from brainseg_gui.ml.precision import (
    autocast_dtype,
    precision_name,
    thinnest_convolution_input,
    training_dtype,
)
from brainseg_gui.ml.sampling import AugmentConfig, PatchSampler
from brainseg_gui.ml.splits import split_cases
from brainseg_gui.ml.validation import ValidationResult, evaluate, tune_postprocess

log = logging.getLogger(__name__)

#: Where a run with `ema_decay` writes its averaged generator (a model directory).
EMA_FOLDER = "ema"
#: Where every run writes its generator as it is after the latest epoch (a model directory).
LAST_FOLDER = "last"

#: Under torchrun, rank r samples with seed + r * SEED_STRIDE (rank 0 keeps the single-process stream).
SEED_STRIDE = 1_000_003

DESCRIPTION = (
    "3D encoder-decoder generator (Conv3d+BatchNorm+ReLU, max-pool down, transposed-conv up, skip "
    "connections, deep supervision) trained adversarially against a 3D patch discriminator, on the "
    "brain crop at a coarse isotropic resolution (logits upsampled to 1 mm): 3D because tumour "
    "regions are 3D structures and one whole-crop pass is fast on a CPU. Research use only."
)


@dataclass
class TrainConfig:
    """Everything a run depends on (recorded in the model card's `training.recipe`)."""

    data_dirs: list[Path] = field(default_factory=list)
    out_dir: Path = Path("model-run")
    val_cases: list[str] | None = None
    folds: int = 0
    fold: int = 0
    val_fraction: float = 0.2
    epochs: int = 40
    steps_per_epoch: int = 100
    # 4 patches a step (the shipped model's GPU run took 16): on a CPU a patch costs no more in a small batch
    # (0.72x: 16 patches' activations overflow the caches), so the same work buys four times the updates
    # (bench/train_step.py).
    batch_size: int = 4
    # Measured on an H100, fold 0 of 4, 3-4k steps (mean val Dice WT/TC/ET at the best epoch):
    # 1e-4 constant .874/.773/.717 (unstable), 1e-4 poly .843/.723/.675, 3e-4 poly .873/.828/.781.
    lr: float = 3e-4
    lr_schedule: str = "poly"  # lr * (1 - progress) ** 0.9, or "constant"
    lambda_rec: float = 20.0  # lambda 5 was less stable (.867/.823/.763 best, .869/.759/.723 last)
    adversarial: bool = True
    dice_loss: bool = True
    augment: bool = True
    modality_dropout: float = 0.2
    patch_size: int = 64
    tumour_fraction: float = 2 / 3
    resolution_mm: float = 1.5
    architecture: str = "generator3d"
    network: dict[str, Any] = field(default_factory=lambda: dict(DEFAULT_CONFIG))
    discriminator: dict[str, Any] = field(default_factory=lambda: dict(DEFAULT_DISCRIMINATOR))
    seed: int = 0
    device: str = "auto"
    amp: str = "auto"  # "auto" (bf16 on CUDA and on CPUs with native bf16), "bf16", "fp16" (CUDA), "off"
    resume: bool = False
    base_model: Path | None = None
    cache_dir: Path | None = None  # default OUT_DIR/training/cache
    et_min_voxels: int | None = None  # None: tuned on the validation cases
    # None: PyTorch's initialisation; p: every region's output starts at probability p (networks.set_output_prior)
    output_prior: float | None = None
    # None: no average; d: also keep an exponential moving average of G (decay min(d, (1 + n) / (10 + n))
    # at its n-th update) in OUT_DIR/ema. Why: on 2 CPU cores a batch holds 4 patches, and the last epochs'
    # validation Dice still moved by +-.03 (TC) from one epoch to the next, so the last epoch is a noisy
    # model and the best one is picked on the very cases it is scored on.
    ema_decay: float | None = None
    description: str = ""

    def recipe(self) -> dict[str, Any]:
        skip = {"data_dirs", "out_dir", "cache_dir", "resume", "val_cases"}
        out = {k: v for k, v in dataclasses.asdict(self).items() if k not in skip}
        out["base_model"] = str(self.base_model) if self.base_model else None
        return out


@dataclass(frozen=True)
class EpochLog:
    epoch: int
    epochs: int
    g_rec: float
    g_adv: float
    d_loss: float
    val_dice: dict[str, float] | None
    seconds: float
    best: bool
    ema_dice: dict[str, float] | None = None  # the weights' moving average (TrainConfig.ema_decay)

    def message(self) -> str:
        text = f"epoch {self.epoch}/{self.epochs} G rec {self.g_rec:.3f} adv {self.g_adv:.3f} D {self.d_loss:.3f}"
        if self.val_dice:
            text += " Dice " + " ".join(f"{k} {v:.3f}" for k, v in self.val_dice.items())
        if self.ema_dice:
            text += " EMA " + " ".join(f"{k} {v:.3f}" for k, v in self.ema_dice.items())
        return text


@dataclass(frozen=True)
class TrainResult:
    model_dir: Path
    card: ModelCard
    history: list[EpochLog]
    best_epoch: int


def _labelled_cases(data_dirs: list[Path]) -> list[tuple[str, Path]]:
    """(case id, a file of the case) of every labelled case under the data folders."""
    from brainseg_gui.core.cases import find_cases

    found = []
    for folder in data_dirs:
        for case in find_cases(Path(folder)):
            if case.seg is None:
                log.warning("skipping %s: no label map", case.case_id)
                continue
            found.append((case.case_id, next(iter(case.files.values()))))  # any file loads exactly that case
    if not found:
        raise StudyLoadError(f"no labelled case found in {[str(d) for d in data_dirs]}")
    return found


def cache_folder(config: TrainConfig) -> Path:
    """Where the run's training cache lives (OUT_DIR/training/cache unless `cache_dir` says)."""
    return Path(config.cache_dir or Path(config.out_dir) / train_state.STATE_FOLDER / "cache")


def own_outputs(output: OutputFolder, config: TrainConfig) -> None:
    """Record what a run writes into `output` (model files, checkpoint folder, a cache inside it)
    before the first write; refuses when one of them is a file the run did not write."""
    paths: list[Path | str] = [CARD_FILE, WEIGHTS_FILE, train_state.STATE_FOLDER, LAST_FOLDER]
    if config.ema_decay is not None:
        paths.append(EMA_FOLDER)
    cache = cache_folder(config).absolute()
    if Path(output.folder).absolute() in cache.parents:
        paths.append(cache)
    output.own(*paths)


def _prepare_cases(config: TrainConfig, resolution: float, device: torch.device, progress: ProgressFn,
                   cancel: CancelToken | None, output: OutputFolder | None):
    cache_dir = cache_folder(config)
    if config.data_dirs:
        found = _labelled_cases(config.data_dirs)
        # the split is checked on the cases' ids before anything is written (again on the cache below)
        split_cases([case_id for case_id, _ in found], val_cases=config.val_cases, folds=config.folds,
                    fold=config.fold, val_fraction=config.val_fraction, seed=config.seed)
        if output is not None:
            own_outputs(output, config)
        context = distributed.env_context()
        if not context.is_local_main:  # one process a node builds the cache; the others then read it
            distributed.barrier()
        paths = build_cache([path for _, path in found], cache_dir, resolution, progress, cancel)
        if context.is_local_main:
            distributed.barrier()
    else:
        paths = cached_files(cache_dir)
        if not paths:
            raise StudyLoadError(f"no data folders given and no training cache in {cache_dir}")
        if output is not None:
            own_outputs(output, config)
    return load_cache(paths, device)


def train(config: TrainConfig, *, progress: ProgressFn = no_progress, cancel: CancelToken | None = None,
          on_epoch: Callable[[EpochLog], None] | None = None, output: OutputFolder | None = None,
          on_step: Callable[[int, int, torch.Tensor], None] | None = None) -> TrainResult:
    """Run (or resume) a training run; returns the best model directory's card and the history.

    `on_step(epoch, step, losses)` (both 1-based) follows every step with its detached (L_rec, L_adv,
    L_D) still on the device: a listener that reads them pays the device sync, the loop does not.

    `output` (the claimed OUT_DIR of `brainseg train`) records the run's files before the first
    is written, once the data and the split have been checked; callers that own a folder above
    OUT_DIR pass none.
    """
    started = time.perf_counter()
    out_dir = Path(config.out_dir)
    context, device = distributed.setup(config.device)
    resumed = train_state.load_state(out_dir) if config.resume and train_state.has_state(out_dir) else None
    if config.resume and resumed is None:
        log.warning("no checkpoint in %s to resume from: starting a new run", out_dir)
    base_card = None
    architecture, network, resolution = config.architecture, dict(config.network), config.resolution_mm
    if resumed is not None:
        architecture, network = resumed["architecture"], dict(resumed["network"])
        resolution = float(resumed["resolution_mm"])
    elif config.base_model is not None:
        base = load_model(config.base_model)
        base_card = base.card
        architecture, network, resolution = base_card.architecture, dict(base_card.config), base_card.resolution_mm
    amp = run_precision(config, architecture, network, device)  # refused here, before anything is written
    if config.output_prior is not None:
        check_output_prior(config.output_prior)
    log.info("training on %s, %s, %s", describe_device(device), context.describe(), precision_name(amp))

    cases = _prepare_cases(config, resolution, device, progress, cancel, output)
    train_ids, val_ids = split_cases(cases.case_ids, val_cases=config.val_cases, folds=config.folds,
                                     fold=config.fold, val_fraction=config.val_fraction, seed=config.seed)
    train_cases, val_cases = cases.subset(train_ids), cases.subset(val_ids)
    log.info("train on %d cases, validate on %d: %s", len(train_ids), len(val_ids), val_ids)

    torch.manual_seed(config.seed)
    generator = build_generator(architecture, network).to(device)
    discriminator: nn.Module = build_discriminator(config.discriminator).to(device)
    if base_card is not None:
        generator.load_state_dict(base.generator.state_dict())
    elif config.output_prior is not None:
        set_output_prior(generator, config.output_prior)
    # channels_last_3d on every device: a step at 16 x 64^3 on an H100 83 -> 34 ms (bf16); on 2 CPU cores
    # the six experiment networks at 16 x 32^3 take 0.75-0.89x the time (bench/experiment_models.py).
    generator.to(memory_format=torch.channels_last_3d)  # type: ignore[call-overload]
    discriminator.to(memory_format=torch.channels_last_3d)  # type: ignore[call-overload]
    # Under torchrun: DDP wrappers train; the plain modules (same parameters) validate and are saved.
    generator_ddp, discriminator_ddp = distributed.wrap(generator, device), distributed.wrap(discriminator, device)
    generator, discriminator = distributed.unwrap(generator_ddp), distributed.unwrap(discriminator_ddp)
    opt_g = torch.optim.Adam(generator.parameters(), lr=config.lr, betas=(0.9, 0.999))
    opt_d = torch.optim.Adam(discriminator.parameters(), lr=config.lr, betas=(0.5, 0.999))
    scaler = torch.amp.GradScaler("cuda", enabled=amp == torch.float16)
    augment = AugmentConfig(enabled=config.augment, modality_dropout=config.modality_dropout)
    sampler = PatchSampler(train_cases, config.patch_size, distributed.shard(config.batch_size, context),
                           augment=augment, tumour_fraction=config.tumour_fraction,
                           seed=config.seed + SEED_STRIDE * context.rank)
    average = moving_average(generator, config.ema_decay) if config.ema_decay is not None else None
    history: list[EpochLog] = []
    start_epoch, best_score, best_epoch = 0, -1.0, 0
    card: ModelCard | None = None
    if resumed is not None:
        generator.load_state_dict(resumed["generator"])
        discriminator.load_state_dict(resumed["discriminator"])
        train_state.restore_optimizer(opt_g, resumed["opt_g"])
        train_state.restore_optimizer(opt_d, resumed["opt_d"])
        scaler.load_state_dict(resumed["scaler"])
        samplers = resumed.get("sampler_ranks") or [resumed["sampler"]]
        if len(samplers) == context.world_size:
            sampler.load_state_dict(samplers[context.rank])
        else:
            log.warning("resuming with %d processes a run saved with %d: patch sampling restarts from "
                        "the seeds", context.world_size, len(samplers))
        start_epoch, best_score, best_epoch = resumed["epoch"], resumed["best_score"], resumed["best_epoch"]
        history = [EpochLog(**entry) for entry in resumed["history"]]
        if average is not None and "ema" in resumed:  # else (a run saved without one) it starts from G now
            average.load_state_dict(resumed["ema"])
        log.info("resuming %s after epoch %d", out_dir, start_epoch)

    total_steps = config.epochs * config.steps_per_epoch
    for epoch in range(start_epoch, config.epochs):
        epoch_started = time.perf_counter()
        generator_ddp.train()
        discriminator_ddp.train()
        sums = torch.zeros(3, device=device)
        for step in range(config.steps_per_epoch):
            if cancel is not None:
                cancel.raise_if_cancelled()
            done = epoch * config.steps_per_epoch + step
            if config.lr_schedule == "poly":
                for group in opt_g.param_groups + opt_d.param_groups:
                    group["lr"] = config.lr * (1 - done / total_steps) ** 0.9
            image, target = sampler.sample()
            losses = _step(generator_ddp, discriminator_ddp, opt_g, opt_d, scaler, image, target, config, amp)
            sums += losses
            progress(done / total_steps, f"epoch {epoch + 1}/{config.epochs} step {step + 1}/{config.steps_per_epoch}")
            if average is not None:
                average.update_parameters(generator)
            if on_step is not None:
                on_step(epoch + 1, step + 1, losses)
        sums = distributed.mean_across_ranks(sums)
        distributed.average_buffers(generator)
        distributed.average_buffers(discriminator)
        g_rec, g_adv, d_loss = (float(v) / config.steps_per_epoch for v in sums.cpu())
        result: ValidationResult | None = None
        if len(val_cases) and context.is_main:
            # validated as it will be used: the CPU predicts in fp32 (torch or OpenVINO), CUDA under autocast
            result = evaluate(generator, val_cases, amp=amp if device.type == "cuda" else None)
        val_dice = distributed.broadcast_object(result.dice if result is not None else None)
        score = float(np.mean(list(val_dice.values()))) if val_dice else float(epoch)
        is_best = score > best_score
        average_result: ValidationResult | None = None
        if average is not None and len(val_cases) and context.is_main:
            average_result = evaluate(average.module, val_cases, amp=amp if device.type == "cuda" else None)
        entry = EpochLog(epoch + 1, config.epochs, g_rec, g_adv, d_loss, val_dice,
                         time.perf_counter() - epoch_started, is_best,
                         average_result.dice if average_result is not None else None)
        history.append(entry)
        if context.is_main:
            save_model(out_dir / LAST_FOLDER, generator, _card(
                config, architecture, network, resolution, train_ids, val_ids, result, history, device, amp,
                started, base_card, weights="last"))
        if average is not None and context.is_main:
            save_model(out_dir / EMA_FOLDER, average.module, _card(
                config, architecture, network, resolution, train_ids, val_ids, average_result, history, device,
                amp, started, base_card, weights="ema"))
        if is_best:
            best_score, best_epoch = score, epoch + 1
            if context.is_main:
                card = save_model(out_dir, generator, _card(config, architecture, network, resolution, train_ids,
                                                            val_ids, result, history, device, amp, started,
                                                            base_card))
        sampler_states = distributed.gather_objects(sampler.state_dict())
        if context.is_main:
            state = {
                "epoch": epoch + 1, "best_score": best_score, "best_epoch": best_epoch,
                "architecture": architecture, "network": network, "resolution_mm": resolution,
                "generator": generator.state_dict(), "discriminator": discriminator.state_dict(),
                "opt_g": opt_g.state_dict(), "opt_d": opt_d.state_dict(), "scaler": scaler.state_dict(),
                "sampler": sampler_states[0],
                "history": [dataclasses.asdict(h) for h in history], "recipe": config.recipe(),
            }
            if average is not None:
                state["ema"] = average.state_dict()
            if context.enabled:  # each rank's sampler, for an exact resume with as many processes
                state["sampler_ranks"] = [{k: v.clone() for k, v in rank.items()} for rank in sampler_states]
            train_state.save_state(out_dir, state)
        log.info(entry.message())
        progress((epoch + 1) / config.epochs, entry.message())
        if on_epoch is not None:
            on_epoch(entry)
    if card is None and context.is_main:  # resumed a finished run, or zero epochs: the model is there
        try:
            card = load_model(out_dir).card
        except ModelError:
            card = save_model(out_dir, generator, _card(config, architecture, network, resolution, train_ids,
                                                        val_ids, None, history, device, amp, started, base_card))
        if history and not (out_dir / LAST_FOLDER / CARD_FILE).exists():  # a run finished before it was kept
            save_model(out_dir / LAST_FOLDER, generator, _card(config, architecture, network, resolution,
                                                               train_ids, val_ids, None, history, device, amp,
                                                               started, base_card, weights="last"))
    if distributed.active():  # every rank returns rank 0's card
        shared = distributed.broadcast_object(card.to_dict() if card is not None else None)
        card = ModelCard.from_dict(shared, source=f"{out_dir} (card from rank 0)")
    assert card is not None  # set above on rank 0, broadcast to the others
    return TrainResult(model_dir=out_dir, card=card, history=history, best_epoch=best_epoch)


def run_precision(config: TrainConfig, architecture: str, network: dict[str, Any],
                  device: torch.device) -> torch.dtype | None:
    """The run's autocast dtype (None: fp32); on the CPU bf16 only where no convolution meets its fault.

    Raises ValueError (PrecisionError) for a setting the device cannot honour.
    """
    dtype = autocast_dtype(config.amp, device)
    if dtype != torch.bfloat16 or device.type == "cuda":
        return dtype
    image = (1, IN_CHANNELS, *(config.patch_size,) * 3)
    mask = (1, OUT_CHANNELS, *(config.patch_size,) * 3)
    with torch.device("meta"):  # only their shapes are read: no weights initialised
        generator, discriminator = build_generator(architecture, network), build_discriminator(config.discriminator)
    thinnest = thinnest_convolution_input([(generator, (image,)), (discriminator, (image, mask))])
    return training_dtype(config.amp, device, thinnest)


def moving_average(generator: nn.Module, decay: float) -> AveragedModel:
    """An exponential moving average of `generator`'s weights and BatchNorm statistics.

    torch's AveragedModel keeps the copy; the decay warms up as min(decay, (1 + n) / (10 + n)) (as in
    TensorFlow's ExponentialMovingAverage with num_updates), so the random start is forgotten within a few
    hundred steps and a run of a few thousand steps averages roughly its last tenth.
    """
    if not 0 < decay < 1:
        raise ValueError(f"the moving average's decay must lie in (0, 1), got {decay}")

    def update(averaged: Sequence[torch.Tensor], current: Sequence[torch.Tensor], updates: torch.Tensor | int) -> None:
        count = float(updates)
        weight = 1.0 - min(decay, (1.0 + count) / (10.0 + count))
        for mean, value in zip(averaged, current, strict=True):
            if mean.is_floating_point():
                mean.lerp_(value, weight)
            else:  # BatchNorm's batch counter
                mean.copy_(value)

    return AveragedModel(generator, multi_avg_fn=update, use_buffers=True)


def _step(generator: nn.Module, discriminator: nn.Module, opt_g: torch.optim.Optimizer,
          opt_d: torch.optim.Optimizer, scaler: torch.amp.GradScaler, image: torch.Tensor, target: torch.Tensor,
          config: TrainConfig, amp: torch.dtype | None) -> torch.Tensor:
    """One G (and D) update; returns the detached (L_rec, L_adv, L_D) on the device (no sync)."""
    device_type = image.device.type
    image = image.contiguous(memory_format=torch.channels_last_3d)
    target = target.contiguous(memory_format=torch.channels_last_3d)
    with torch.autocast(device_type, dtype=amp or torch.bfloat16, enabled=amp is not None):
        outputs = generator(image)
    logits = outputs[0] if isinstance(outputs, (list, tuple)) else outputs
    # D is trained through its DDP wrapper; G's adversarial pass uses the plain module (D frozen there).
    rec = losses.deep_supervision_loss(outputs, target, dice=config.dice_loss)
    zero = rec.detach() * 0
    if not config.adversarial:
        opt_g.zero_grad(set_to_none=True)
        scaler.scale(rec).backward()
        scaler.step(opt_g)
        scaler.update()
        return torch.stack([rec.detach(), zero, zero])
    fake = torch.sigmoid(logits.float())
    discriminator.requires_grad_(True)
    with torch.autocast(device_type, dtype=amp or torch.bfloat16, enabled=amp is not None):
        d_real, d_fake = discriminator(image, target), discriminator(image, fake.detach())
    d_loss = losses.discriminator_loss(d_real, d_fake)
    opt_d.zero_grad(set_to_none=True)
    scaler.scale(d_loss).backward()
    scaler.step(opt_d)
    discriminator.requires_grad_(False)
    with torch.autocast(device_type, dtype=amp or torch.bfloat16, enabled=amp is not None):
        adv = losses.adversarial_generator_loss(distributed.unwrap(discriminator)(image, fake))
    g_loss = adv + config.lambda_rec * rec
    opt_g.zero_grad(set_to_none=True)
    scaler.scale(g_loss).backward()
    scaler.step(opt_g)
    scaler.update()
    return torch.stack([rec.detach(), adv.detach(), d_loss.detach()])


def _card(config: TrainConfig, architecture: str, network: dict[str, Any], resolution: float,
          train_ids: list[str], val_ids: list[str], result: ValidationResult | None, history: list[EpochLog],
          device: torch.device, amp: torch.dtype | None, started: float, base_card: ModelCard | None,
          weights: str = "epoch") -> ModelCard:
    """The model card of the generator as it is at this epoch (`weights` "epoch": the best one so far,
    "last": the latest, "ema": its moving average)."""
    context = distributed.env_context()
    postprocess: dict[str, Any] = {"threshold": 0.5, "et_min_voxels": 0}
    if base_card is not None:
        postprocess.update(base_card.postprocess)
    if config.et_min_voxels is not None:
        postprocess["et_min_voxels"] = int(config.et_min_voxels)
    elif result is not None:
        postprocess["et_min_voxels"] = tune_postprocess(result, resolution)
    validation: dict[str, Any] = {}
    if result is not None:
        validation = {"dice": result.dice, "dice_postprocessed": result.dice_postprocessed(
            int(postprocess["et_min_voxels"]), resolution), "per_case": result.per_case,
            "cases": val_ids, "where": f"model resolution {resolution} mm, brain crop, threshold 0.5"}
    return ModelCard(
        architecture=architecture, config=network, resolution_mm=resolution,
        postprocess=postprocess, modality_dropout=config.modality_dropout > 0,
        training={
            "cases": train_ids, "validation_cases": val_ids, "recipe": config.recipe(),
            "epochs_done": len(history), "device": describe_device(device),
            "precision": precision_name(amp),
            "processes": context.world_size,
            "seconds": round(time.perf_counter() - started, 1),
            "base_model": base_card.version if base_card is not None else None,
            "weights": weights,
            "history": [{"epoch": h.epoch, "g_rec": round(h.g_rec, 5), "g_adv": round(h.g_adv, 5),
                         "d": round(h.d_loss, 5), "dice": h.val_dice} for h in history],
        },
        validation=validation, description=config.description or DESCRIPTION,
    )
