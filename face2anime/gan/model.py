"""The CycleGAN of one method: two generators, two discriminators, their losses, Adam
optimisers with linear decay, EMA copies of the generators and one optimisation step.

Losses (paper + CycleGAN): ``L_G = adv(D_Y(G_XY(x))) + adv(D_X(G_YX(y)))
+ lambda_cyc * (|G_YX(G_XY(x)) - x|_1 + |G_XY(G_YX(y)) - y|_1)
+ lambda_idt * lambda_cyc * (|G_XY(y) - y|_1 + |G_YX(x) - x|_1) + lambda_tv * TV(G_XY(x))``
(:func:`total_variation`, a flat-shading prior on the anime translations, off at 0); each D minimises
``0.5 * (gan(D(real), 1) + gan(D(pool(fake)), 0))``. ``gan`` is BCE-with-logits (vanilla, the
paper's log loss) or MSE (lsgan). Losses are computed in fp32; the network forwards run under
bf16 autocast when ``precision`` asks for it.

:class:`UGATIT` (a method's ``model: ugatit``) is the same machinery with U-GAT-IT light's
networks and losses; :func:`make_model` picks the class.
"""
from __future__ import annotations


from typing import Any, Callable

import torch
import torch.nn.functional as F
from torch import nn
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

from face2anime.core.runtime import (
    resolve_precision,
)
from face2anime.gan import augment, dcam, distributed
from face2anime.gan.augment import parse_policy
from face2anime.gan.speed import (
    Compiled,
)
from face2anime.gan.config import TrainConfig
from face2anime.gan.data import d_feature_size, resize_cams
from face2anime.gan.pool import ImagePool
from face2anime.models.networks import (
    Discriminator,
    Generator,
    init_weights,
)
from face2anime.models import ugatit

def gan_loss(logits: torch.Tensor, real: bool, kind: str) -> torch.Tensor:
    """Vanilla (BCE-with-logits) or LSGAN (MSE) loss of D's patch logits vs the label, in fp32."""
    logits = logits.float()
    target = torch.ones_like(logits) if real else torch.zeros_like(logits)
    if kind == "lsgan":
        return F.mse_loss(logits, target)
    return F.binary_cross_entropy_with_logits(logits, target)


#: class indices of the guiding classifier (0 = human = domain X, 1 = character = Y)
LABEL_X, LABEL_Y = 0, 1
#: the losses :meth:`CycleGAN.step` returns, in order (fp32 tensor ``[4]``)
LOSSES = ("loss_G_adv", "loss_D", "loss_cyc", "loss_idt")
#: the discriminator statistics it returns (fp32 tensor ``[2]``): share of real / fake patches D gets right
D_STATS = ("d_acc_real", "d_acc_fake")


def total_variation(img: torch.Tensor) -> torch.Tensor:
    """Anisotropic L1 total variation of ``[B, C, H, W]``: mean |right step| + mean |down step|.

    Piecewise-constant images (flat shading with sharp outlines, as anime is drawn) minimise
    it for a given outline: a weight on it penalises fine texture more than edges."""
    return (img[..., :, 1:] - img[..., :, :-1]).abs().mean() + (img[..., 1:, :] - img[..., :-1, :]).abs().mean()


def _cat(a: torch.Tensor | None, b: torch.Tensor | None) -> torch.Tensor | None:
    return None if a is None or b is None else torch.cat([a, b])


def _split(out: Any, b: int) -> tuple:
    """A network's output on a concatenated batch (a tensor or nested tuples of tensors) ->
    (its first ``b`` images' output, the rest's), with the same nesting."""
    if isinstance(out, torch.Tensor):
        return tuple(out.split(b))
    return tuple(zip(*(_split(o, b) for o in out)))


def _cat_aug(aug: list[dict[str, torch.Tensor]] | None, i: int, j: int) -> dict[str, torch.Tensor] | None:
    """The DiffAugment draws of ``aug[i]`` and ``aug[j]`` as one draw for their concatenated batches."""
    if aug is None:
        return None
    return {k: torch.cat([aug[i][k], aug[j][k]], dim=1 if k in ("shift", "cutout") else 0) for k in aug[i]}


class CycleGAN:
    """Two generators, two discriminators, their optimisers, schedulers and image pools.

    ``step(x, y, cx, cy, dcx, dcy)`` runs one CycleGAN optimisation step on a human batch ``x``
    and a character batch ``y`` (float ``[B, 3, H, W]`` in [-1, 1]) with their CAMs for the
    generators (``[B, 1, h, w]``) and for the discriminators (``[B, 1, d, d]``, see
    :func:`d_feature_size`), or None. It returns the losses (:data:`LOSSES`) and D's accuracies
    (:data:`D_STATS`) as detached fp32 tensors, without reading them on the host (no sync).

    With ``cfg.ema > 0`` it also keeps an exponential moving average of both generators'
    weights (``w_ema <- ema * w_ema + (1 - ema) * w`` after every step); :meth:`generators`
    returns those averaged copies, which are what gets saved and sampled. Averaging over the
    last ~1/(1-ema) steps damps the step-to-step oscillation of adversarial training.

    Speed options (``cfg``): ``compile`` runs the G and D loss computations as inductor graphs
    (:class:`~face2anime.gan.speed.Compiled`, eager fallback), ``channels_last`` keeps weights
    and activations NHWC, ``adam`` picks the optimiser implementation, ``fuse_passes`` runs
    each network once per phase on the concatenated inputs that share its weights
    (``G_XY([x; y])`` gives the translation and the identity image; D sees real and pooled
    fake in one call; instance norm is per image, so this is the same function).
    """

    def __init__(self, cfg: TrainConfig, device: torch.device, notify: Callable[[str], None] | None = None,
                 rank: int = 0):
        self.cfg, self.device = cfg, device
        if cfg.lambda_tv > 0:                                   # _g_loss appends its term to the parts
            self.loss_names = type(self).loss_names + ("loss_tv",)
        self._bf16 = resolve_precision(device, cfg.precision) == "bf16"
        self.notify = notify or (lambda msg: print(msg, flush=True))
        nets = self._make_nets(torch.Generator().manual_seed(cfg.seed))
        self.G_XY, self.G_YX, self.D_X, self.D_Y = (nets[k].to(device) for k in ("G_XY", "G_YX", "D_X", "D_Y"))
        if cfg.channels_last:
            for net in self.nets().values():
                net.to(memory_format=torch.channels_last)
        betas = (cfg.beta1, cfg.beta2)
        impl = {"default": {}, "foreach": {"foreach": True}, "fused": {"fused": True}}[cfg.adam]
        impl["weight_decay"] = cfg.weight_decay   # 0: exactly Adam without decay
        self.opt_G = torch.optim.Adam(list(self.G_XY.parameters()) + list(self.G_YX.parameters()), cfg.lr, betas,
                                      **impl)
        self.opt_D = torch.optim.Adam(list(self.D_X.parameters()) + list(self.D_Y.parameters()), cfg.lr, betas,
                                      **impl)
        total, decay = cfg.total_steps, cfg.lr_decay_epochs * cfg.steps_per_epoch
        start = total - decay

        def factor(step: int) -> float:  # linear decay to 0 over the last `decay` steps
            return 1.0 if decay == 0 or step < start else max(0.0, 1.0 - (step - start) / decay)

        self.sched_G = torch.optim.lr_scheduler.LambdaLR(self.opt_G, factor)
        self.sched_D = torch.optim.lr_scheduler.LambdaLR(self.opt_D, factor)
        rs = 7919 * rank                                        # other ranks: their own pool and augmentation draws
        self.pool_X = ImagePool(cfg.pool_size, cfg.seed + 1 + rs)  # fakes G_YX(y) for D_X, with D's cam for them
        self.pool_Y = ImagePool(cfg.pool_size, cfg.seed + 2 + rs)  # fakes G_XY(x) for D_Y, with D's cam for them
        self.ema: dict[str, AveragedModel] = {}
        if cfg.ema > 0:
            for k, g in (("G_XY", self.G_XY), ("G_YX", self.G_YX)):
                avg = AveragedModel(g, multi_avg_fn=get_ema_multi_avg_fn(cfg.ema)).requires_grad_(False)
                avg.update_parameters(g)  # the first update copies: the average starts at the initial weights
                self.ema[k] = avg
        self.policy = parse_policy(cfg.diffaug)
        self.geo_aug = augment.geometric(self.policy)
        self.aug_gen = torch.Generator().manual_seed(cfg.seed + 3 + rs)   # DiffAugment's draws (own stream)
        #: the CAM D multiplies in: none without attention; with d_cam: self, cam_net must be set
        self.d_cam = cfg.d_cam if cfg.attention else "none"
        self.cam_net: nn.Module | None = None
        self.image_size = 0                                            # set by the first step
        self.g_fn = Compiled(self._g_loss, "the generator step", cfg.compile, self.notify)
        self.d_fn = Compiled(self._d_loss, "the discriminator step", cfg.compile, self.notify)
        self._ddp: dict[Compiled, nn.Module] = {}   # set by distribute() when several processes train

    #: the losses :meth:`step` returns, in order (an instance with ``lambda_tv > 0`` adds ``loss_tv``)
    loss_names: tuple[str, ...] = LOSSES

    def _make_nets(self, gen: torch.Generator) -> dict[str, nn.Module]:
        """``G_XY``, ``G_YX``, ``D_X``, ``D_Y`` (on the CPU), initialised from ``gen``."""
        cfg = self.cfg
        return {"G_XY": init_weights(Generator(cfg.ngf, cfg.n_res, cfg.attention_mode, cfg.upsample), gen),
                "G_YX": init_weights(Generator(cfg.ngf, cfg.n_res, cfg.attention_mode, cfg.upsample), gen),
                "D_X": init_weights(Discriminator(cfg.ndf, cfg.attention_mode, cfg.d_blur), gen),
                "D_Y": init_weights(Discriminator(cfg.ndf, cfg.attention_mode, cfg.d_blur), gen)}

    def _after_g_step(self) -> None:
        """Called after each generator optimiser step (U-GAT-IT clips its rho here)."""

    def distribute(self, world: "distributed.World") -> None:
        """Several processes: DDP over each phase (G's loss for the generators, D's for the
        discriminators); call after loading a checkpoint (DDP starts from rank 0's weights)."""
        if world.distributed:
            # a rank that fell back to eager alone would desynchronise DDP's collectives: under
            # DDP a compiler error stops every rank instead (they all compile the same graph)
            self.g_fn.fallback = self.d_fn.fallback = False
            self._ddp = {self.g_fn: distributed.wrap({"G_XY": self.G_XY, "G_YX": self.G_YX}, self.g_fn, self.device),
                         self.d_fn: distributed.wrap({"D_X": self.D_X, "D_Y": self.D_Y}, self.d_fn, self.device)}

    def compile_mode(self) -> str:
        """``inductor`` when both loss computations run compiled, ``eager`` otherwise."""
        return "inductor" if self.g_fn.mode == self.d_fn.mode == "inductor" else "eager"

    def compile_seconds(self) -> float:
        """Wall time of the compiled functions' first two calls (compile + warm-up), this process."""
        return self.g_fn.seconds + self.d_fn.seconds

    def nets(self) -> dict[str, nn.Module]:
        return {"G_XY": self.G_XY, "G_YX": self.G_YX, "D_X": self.D_X, "D_Y": self.D_Y}

    def generators(self) -> dict[str, nn.Module]:
        """The generators to save and sample: the EMA copies when ``cfg.ema > 0``, else the trained ones."""
        if self.ema:
            return {k: avg.module for k, avg in self.ema.items()}
        return {"G_XY": self.G_XY, "G_YX": self.G_YX}

    def _update_ema(self) -> None:
        for k, avg in self.ema.items():
            avg.update_parameters(self.nets()[k])

    def _ac(self):
        """bf16 autocast when the precision resolves to bf16 (resolved once: traceable by dynamo)."""
        return torch.autocast(self.device.type, torch.bfloat16, enabled=self._bf16)

    def layout(self, x: torch.Tensor) -> torch.Tensor:
        """``x`` in the networks' memory format (NHWC with ``channels_last``)."""
        return x.contiguous(memory_format=torch.channels_last) if self.cfg.channels_last else x

    # ---- the two loss computations (pure: the compiled graphs) ----
    def set_cam_net(self, net: nn.Module) -> None:
        """The frozen guiding classifier for ``d_cam: self`` (eval mode, no gradients)."""
        self.cam_net = net.to(self.device).eval().requires_grad_(False)
        if self.cfg.channels_last:
            self.cam_net.to(memory_format=torch.channels_last)

    def _d_view(self, img: torch.Tensor, cam: torch.Tensor | None, aug: dict[str, torch.Tensor] | None,
                target: int) -> tuple[torch.Tensor, torch.Tensor | None]:
        """(image, CAM) as a discriminator of class ``target`` sees them: DiffAugment applied to
        the image, the CAM per ``d_cam`` (``source``: the given CAM, moved like the image;
        ``self``: the given one, or when None the classifier's CAM of the augmented image;
        ``none``: no CAM)."""
        if aug is not None:
            img = augment.apply(img, aug)
        if self.d_cam == "none":
            return img, None
        if self.d_cam == "self":
            if cam is None:
                assert self.cam_net is not None, "d_cam: self needs set_cam_net()"
                cam = dcam.self_cam(self.cam_net, img, target, d_feature_size(self.image_size))
            return img, cam
        if cam is not None and aug is not None and self.geo_aug:
            cam = augment.warp_cam(cam, aug, self.image_size, d_feature_size(self.image_size))
        return img, cam

    def _add_tv(self, loss_G: torch.Tensor, parts: list[torch.Tensor], fake_y: torch.Tensor) -> torch.Tensor:
        """With ``lambda_tv > 0``: append TV(``fake_y``) to the logged ``parts`` (``loss_tv``)
        and return ``loss_G`` plus its weighted term; else ``loss_G`` unchanged."""
        if self.cfg.lambda_tv <= 0:
            return loss_G
        parts.append(total_variation(fake_y))
        return loss_G + self.cfg.lambda_tv * parts[-1]

    def _g_loss(self, x: torch.Tensor, y: torch.Tensor, cx: torch.Tensor | None, cy: torch.Tensor | None,
                dcx: torch.Tensor | None, dcy: torch.Tensor | None, aug_y: dict[str, torch.Tensor] | None = None,
                aug_x: dict[str, torch.Tensor] | None = None):
        """Generator loss with D frozen -> (loss_G, fake_y, fake_x (detached fp32), [adv, cyc, idt (, tv)],
        the CAMs to store with fake_y and fake_x in the pools (as given; self mode: as computed)).

        ``dcx``/``dcy``: the CAM D gets with each fake (source mode: the source's; self mode
        without augmentation: None, computed here)."""
        cfg = self.cfg
        idt_y = idt_x = None
        with self._ac():
            if cfg.fuse_passes:
                b = x.shape[0]
                if cfg.lambda_idt > 0:
                    fake_y, idt_y = self.G_XY(torch.cat([x, y]), _cat(cx, cy)).split(b)
                    fake_x, idt_x = self.G_YX(torch.cat([y, x]), _cat(cy, cx)).split(b)
                else:
                    fake_y, fake_x = self.G_XY(x, cx), self.G_YX(y, cy)
                rec_x = self.G_YX(fake_y, cx)
                rec_y = self.G_XY(fake_x, cy)
                (vy, cvy), (vx, cvx) = self._d_view(fake_y, dcx, aug_y, LABEL_Y), self._d_view(fake_x, dcy, aug_x, LABEL_X)
                d_fy, d_fx = self.D_Y(vy, cvy), self.D_X(vx, cvx)
            else:  # the classic order (the order autograd accumulates gradients in)
                fake_y = self.G_XY(x, cx)
                rec_x = self.G_YX(fake_y, cx)
                fake_x = self.G_YX(y, cy)
                rec_y = self.G_XY(fake_x, cy)
                (vy, cvy), (vx, cvx) = self._d_view(fake_y, dcx, aug_y, LABEL_Y), self._d_view(fake_x, dcy, aug_x, LABEL_X)
                d_fy, d_fx = self.D_Y(vy, cvy), self.D_X(vx, cvx)
                if cfg.lambda_idt > 0:
                    idt_y, idt_x = self.G_XY(y, cy), self.G_YX(x, cx)
        fake_y, rec_x, fake_x, rec_y = fake_y.float(), rec_x.float(), fake_x.float(), rec_y.float()
        adv = gan_loss(d_fy, True, cfg.gan_loss) + gan_loss(d_fx, True, cfg.gan_loss)
        cyc = F.l1_loss(rec_x, x) + F.l1_loss(rec_y, y)
        if idt_y is not None and idt_x is not None:
            idt = F.l1_loss(idt_y.float(), y) + F.l1_loss(idt_x.float(), x)
        else:
            idt = torch.zeros((), device=x.device)
        loss_G = adv + cfg.lambda_cyc * cyc + cfg.lambda_idt * cfg.lambda_cyc * idt
        parts = [adv, cyc, idt]
        loss_G = self._add_tv(loss_G, parts, fake_y)
        if self.d_cam == "self":    # the pools keep what the fakes were given: self mode, the computed CAM
            dcx, dcy = cvy, cvx
        return loss_G, fake_y.detach(), fake_x.detach(), torch.stack(parts).detach(), dcx, dcy

    def _d_outputs(self, x: torch.Tensor, y: torch.Tensor, px: torch.Tensor, py: torch.Tensor,
                   dcx: torch.Tensor | None, dcy: torch.Tensor | None, dpx: torch.Tensor | None,
                   dpy: torch.Tensor | None, aug: list[dict[str, torch.Tensor]] | None) -> tuple:
        """The discriminators' outputs ``(D_Y(y), D_Y(py), D_X(x), D_X(px))`` as :meth:`_d_loss` takes them."""
        a = aug or [None, None, None, None]  # type: ignore[list-item]
        with self._ac():
            if self.cfg.fuse_passes:
                b = y.shape[0]
                a_y, a_x = _cat_aug(aug, 0, 1), _cat_aug(aug, 2, 3)
                r_y, f_y = _split(self.D_Y(*self._d_view(torch.cat([y, py]), _cat(dcy, dpy), a_y, LABEL_Y)), b)
                r_x, f_x = _split(self.D_X(*self._d_view(torch.cat([x, px]), _cat(dcx, dpx), a_x, LABEL_X)), b)
            else:
                r_y, f_y = self.D_Y(*self._d_view(y, dcy, a[0], LABEL_Y)), self.D_Y(*self._d_view(py, dpy, a[1], LABEL_Y))
                r_x, f_x = self.D_X(*self._d_view(x, dcx, a[2], LABEL_X)), self.D_X(*self._d_view(px, dpx, a[3], LABEL_X))
        return r_y, f_y, r_x, f_x

    def _d_loss(self, x: torch.Tensor, y: torch.Tensor, px: torch.Tensor, py: torch.Tensor,
                dcx: torch.Tensor | None, dcy: torch.Tensor | None, dpx: torch.Tensor | None,
                dpy: torch.Tensor | None, aug: list[dict[str, torch.Tensor]] | None = None):
        """Discriminator loss on reals and pooled fakes -> (loss_D, [acc real, acc fake] (detached)).

        ``aug``: DiffAugment draws for ``[y, py, x, px]`` (in that order) or None."""
        cfg = self.cfg
        r_y, f_y, r_x, f_x = self._d_outputs(x, y, px, py, dcx, dcy, dpx, dpy, aug)
        loss_D = 0.5 * (gan_loss(r_y, True, cfg.gan_loss) + gan_loss(f_y, False, cfg.gan_loss)) \
            + 0.5 * (gan_loss(r_x, True, cfg.gan_loss) + gan_loss(f_x, False, cfg.gan_loss))
        with torch.no_grad():
            thr = 0.5 if cfg.gan_loss == "lsgan" else 0.0  # the decision boundary between the targets
            acc_r = 0.5 * ((r_y.float() > thr).float().mean() + (r_x.float() > thr).float().mean())
            acc_f = 0.5 * ((f_y.float() < thr).float().mean() + (f_x.float() < thr).float().mean())
        return loss_D, torch.stack([acc_r, acc_f])

    def _minimise(self, fn: Compiled, opt: torch.optim.Optimizer, *args: Any) -> tuple:
        """``fn(*args)``, backward of its loss (first output) and one optimiser step; a compiled
        backward that fails switches ``fn`` to eager and recomputes (nothing was stepped yet)."""
        call = self._ddp.get(fn, fn)      # the DDP wrapper averages the gradients over the ranks
        out = call(*args)
        opt.zero_grad(set_to_none=True)
        try:
            out[0].backward()
        except Exception as e:  # noqa: BLE001 - fail() keeps only compiler errors, re-raises the rest
            if fn.compiled is None:
                raise
            fn.fail(e)
            out = call(*args)
            opt.zero_grad(set_to_none=True)
            out[0].backward()
        opt.step()
        return out

    def step(self, x: torch.Tensor, y: torch.Tensor, cx: torch.Tensor | None, cy: torch.Tensor | None,
             dcx: torch.Tensor | None = None, dcy: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """One optimisation step -> (losses in :attr:`loss_names` order, D stats ``[2]``).

        ``dcx``/``dcy``: the real images' CAMs for D (:func:`prepare_dcams`); by default ``cx``/``cy``
        resized to D's feature size (``d_cam: source``) or computed (``self``)."""
        self.image_size = size = int(x.shape[-1])
        ds = d_feature_size(size)
        if self.d_cam == "source":
            if self.geo_aug:          # D's CAMs are moved with the image: start from G's resolution
                dcx, dcy = cx, cy
            else:
                dcx = resize_cams(cx, ds) if cx is not None and dcx is None else dcx
                dcy = resize_cams(cy, ds) if cy is not None and dcy is None else dcy
        elif self.d_cam == "self":
            if self.policy:           # the CAM of the augmented image, computed in the step
                dcx = dcy = None
            else:
                dcx = dcam.self_cam(self.cam_net, x, LABEL_X, ds) if dcx is None else dcx  # type: ignore[arg-type]
                dcy = dcam.self_cam(self.cam_net, y, LABEL_Y, ds) if dcy is None else dcy  # type: ignore[arg-type]
        else:
            dcx = dcy = None
        x, y = self.layout(x), self.layout(y)
        b = x.shape[0]
        aug_g = aug_d = None
        if self.policy:
            aug_g = augment.split(augment.draw(self.policy, 2 * b, size, self.aug_gen, self.device), [b, b])
            aug_d = augment.split(augment.draw(self.policy, 4 * b, size, self.aug_gen, self.device), [b] * 4)
        for d in (self.D_X, self.D_Y):
            d.requires_grad_(False)
        # source mode: a fake character carries its source human's CAM (G's fakes are the source's)
        fdx = None if self.d_cam == "self" else dcx
        fdy = None if self.d_cam == "self" else dcy
        out = self._minimise(self.g_fn, self.opt_G, x, y, cx, cy, fdx, fdy,
                             *(aug_g if aug_g is not None else (None, None)))
        self._after_g_step()
        _, fake_y, fake_x, parts, cam_fy, cam_fx = out
        if self.d_cam == "self" and self.policy:   # pooled fakes get the CAM of their augmented view
            cam_fy = cam_fx = None

        for d in (self.D_X, self.D_Y):
            d.requires_grad_(True)
        py, dpy = self.pool_Y.query(fake_y, cam_fy)
        px, dpx = self.pool_X.query(fake_x, cam_fx)
        loss_D, d_stats = self._minimise(self.d_fn, self.opt_D, x, y, px, py, dcx, dcy, dpx, dpy, aug_d)
        self.sched_G.step()
        self.sched_D.step()
        self._update_ema()
        losses = torch.cat([parts[:1], loss_D.detach().reshape(1), parts[1:]])
        return losses, d_stats

    def state_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {k: v.state_dict() for k, v in self.nets().items()}
        out.update({f"ema_{k}": v.state_dict() for k, v in self.ema.items()})
        out.update(opt_G=self.opt_G.state_dict(), opt_D=self.opt_D.state_dict(),
                   sched_G=self.sched_G.state_dict(), sched_D=self.sched_D.state_dict(),
                   pool_X=self.pool_X.state_dict(), pool_Y=self.pool_Y.state_dict())
        if self.policy:
            out["aug_gen"] = self.aug_gen.get_state()
        return out

    def load_state_dict(self, state: dict[str, Any]) -> None:
        for k, net in self.nets().items():
            net.load_state_dict(state[k])
        for k, net in self.ema.items():
            net.load_state_dict(state[f"ema_{k}"])
        self.opt_G.load_state_dict(state["opt_G"])
        self.opt_D.load_state_dict(state["opt_D"])
        self.sched_G.load_state_dict(state["sched_G"])
        self.sched_D.load_state_dict(state["sched_D"])
        self.pool_X.load_state_dict(state["pool_X"], self.device)
        self.pool_Y.load_state_dict(state["pool_Y"], self.device)
        if self.policy:
            self.aug_gen.set_state(state["aug_gen"])


def _bce(logits: torch.Tensor, source: bool) -> torch.Tensor:
    return gan_loss(logits, source, "vanilla")


class UGATIT(CycleGAN):
    """U-GAT-IT light (:mod:`face2anime.models.ugatit`) in the CycleGAN machinery: the same
    step, optimisers, schedules, pools, EMA, DiffAugment, checkpoints and DDP phases; its own
    networks and losses (``model: ugatit``; ``attention`` must be false: it learns its own).

    Generators (``gan`` = ``cfg.gan_loss``, least squares for the authors; both discriminators
    of a domain, global and local, each with a patch and a CAM output)::

        L_G = sum_{D, out} gan(D_out(fake), 1)                         # 8 terms
            + lambda_cyc * (|G_YX(G_XY(x)) - x|_1 + |G_XY(G_YX(y)) - y|_1)
            + lambda_idt * lambda_cyc * (|G_XY(y) - y|_1 + |G_YX(x) - x|_1)
            + lambda_cam * (bce(eta_XY(x), 1) + bce(eta_XY(y), 0) + bce(eta_YX(y), 1) + bce(eta_YX(x), 0))

    where ``eta`` are a generator's CAM logits ``[B, 2]``: "source" (1) on its source-domain
    input, "target" (0) on the identity pass. Discriminators:
    ``L_D = sum_{D, out} gan(D_out(real), 1) + gan(D_out(pool(fake)), 0)`` (the authors' sum,
    no 0.5). After every generator step every rho is clipped to [0, 1].

    ``fuse_passes`` is the same function up to spectral norm's power iteration, which runs once
    per discriminator call (one call on a concatenated batch instead of two).
    """

    loss_names = LOSSES + ("loss_cam",)

    def __init__(self, cfg: TrainConfig, device: torch.device, notify: Callable[[str], None] | None = None,
                 rank: int = 0, size: int = 0):
        if size < 16:
            raise ValueError(f"U-GAT-IT needs the training image size (>= 16 px), got {size}")
        self.size = size
        super().__init__(cfg, device, notify, rank)

    def _make_nets(self, gen: torch.Generator) -> dict[str, nn.Module]:
        seed = int(torch.randint(0, 2 ** 62, (), generator=gen))
        return ugatit.build(self.cfg.ngf, self.cfg.ndf, self.cfg.n_res, self.size, seed)

    def _after_g_step(self) -> None:
        ugatit.clip_rho(self.G_XY)
        ugatit.clip_rho(self.G_YX)

    def generators(self) -> dict[str, nn.Module]:
        """As for CycleGAN, each called like a CycleGAN generator (``g(x) -> image``)."""
        return {k: ugatit.ImageOnly(g) for k, g in super().generators().items()}

    def _g_loss(self, x: torch.Tensor, y: torch.Tensor, cx: torch.Tensor | None, cy: torch.Tensor | None,
                dcx: torch.Tensor | None, dcy: torch.Tensor | None, aug_y: dict[str, torch.Tensor] | None = None,
                aug_x: dict[str, torch.Tensor] | None = None):
        """As :meth:`CycleGAN._g_loss`, parts ``[adv, cyc, idt, cam]`` (+ ``tv``); no CAMs in or out."""
        cfg = self.cfg
        need_idt = cfg.lambda_idt > 0 or cfg.lambda_cam > 0
        idt_y = idt_x = None
        with self._ac():
            if cfg.fuse_passes and need_idt:
                b = x.shape[0]
                gy, idt_y = _split(self.G_XY(torch.cat([x, y])), b)
                gx, idt_x = _split(self.G_YX(torch.cat([y, x])), b)
            else:
                gy, gx = self.G_XY(x), self.G_YX(y)
            rec_x, rec_y = self.G_YX(gy[0])[0], self.G_XY(gx[0])[0]
            if need_idt and idt_y is None:
                idt_y, idt_x = self.G_XY(y), self.G_YX(x)
            d_fy = self.D_Y(self._d_view(gy[0], None, aug_y, LABEL_Y)[0])
            d_fx = self.D_X(self._d_view(gx[0], None, aug_x, LABEL_X)[0])
        fake_y, fake_x = gy[0].float(), gx[0].float()
        adv = sum(gan_loss(p, True, cfg.gan_loss) + gan_loss(c, True, cfg.gan_loss) for p, c, _ in (*d_fy, *d_fx))
        cyc = F.l1_loss(rec_x.float(), x) + F.l1_loss(rec_y.float(), y)
        zero = torch.zeros((), device=x.device)
        idt = cam = zero
        if idt_y is not None and idt_x is not None:
            idt = F.l1_loss(idt_y[0].float(), y) + F.l1_loss(idt_x[0].float(), x)
            cam = _bce(gy[1], True) + _bce(idt_y[1], False) + _bce(gx[1], True) + _bce(idt_x[1], False)
        loss_G = adv + cfg.lambda_cyc * cyc + cfg.lambda_idt * cfg.lambda_cyc * idt + cfg.lambda_cam * cam
        parts = [adv, cyc, idt, cam]
        loss_G = self._add_tv(loss_G, parts, fake_y)
        return loss_G, fake_y.detach(), fake_x.detach(), torch.stack(parts).detach(), None, None

    def _d_loss(self, x: torch.Tensor, y: torch.Tensor, px: torch.Tensor, py: torch.Tensor,
                dcx: torch.Tensor | None, dcy: torch.Tensor | None, dpx: torch.Tensor | None,
                dpy: torch.Tensor | None, aug: list[dict[str, torch.Tensor]] | None = None):
        """As :meth:`CycleGAN._d_loss`; the accuracies over the patch logits of both scales."""
        cfg = self.cfg
        r_y, f_y, r_x, f_x = self._d_outputs(x, y, px, py, dcx, dcy, dpx, dpy, aug)
        reals, fakes = (*r_y, *r_x), (*f_y, *f_x)      # (patch, cam, heat) of each D
        loss_D = sum(gan_loss(p, True, cfg.gan_loss) + gan_loss(c, True, cfg.gan_loss) for p, c, _ in reals) \
            + sum(gan_loss(p, False, cfg.gan_loss) + gan_loss(c, False, cfg.gan_loss) for p, c, _ in fakes)
        with torch.no_grad():
            thr = 0.5 if cfg.gan_loss == "lsgan" else 0.0
            acc_r = torch.stack([(o[0].float() > thr).float().mean() for o in reals]).mean()
            acc_f = torch.stack([(o[0].float() < thr).float().mean() for o in fakes]).mean()
        return loss_D, torch.stack([acc_r, acc_f])


def make_model(cfg: TrainConfig, device: torch.device, notify: Callable[[str], None] | None = None,
               rank: int = 0, size: int = 0) -> CycleGAN:
    """The model of ``cfg.model``: :class:`CycleGAN` or :class:`UGATIT` (which needs the image ``size``)."""
    if cfg.model == "ugatit":
        return UGATIT(cfg, device, notify, rank, size)
    return CycleGAN(cfg, device, notify, rank)
