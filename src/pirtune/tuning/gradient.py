"""``tune.method=gradient``: the paper's tuning (section 2.4), ``PIRTuningModule``."""

from __future__ import annotations

from pirtune.tuning import TuningMethod
from pirtune.tuning.base import TuneContext, fit


class GradientMethod(TuningMethod):
    """G's weights climb the frozen estimator's reward by its gradient; D keeps training.

    Every setting is ``tune``'s own (steps, lr, w_pir, reward, anchor …), so
    ``tune=pir`` and ``experiment=paper`` are unchanged.
    """

    name = "gradient"

    def tune(self, ctx: TuneContext) -> None:
        from pirtune.models.tuning import PIRTuningModule

        cfg = ctx.cfg
        datamodule = ctx.real_data()

        def build():
            return PIRTuningModule.from_bundle(
                ctx.rnd.start, ctx.estimator, cfg.lr, w_pir=cfg.w_pir, ema_decay=cfg.ema_decay,
                compile_mode=cfg.compile_mode, reward=cfg.reward,
                reward_lambda=cfg.reward_lambda, anchor=cfg.anchor,
                anchor_space=cfg.anchor_space, whole_step=cfg.whole_step,
                channels_last=cfg.channels_last)

        done = fit(ctx, build, datamodule)
        if done is not None:
            module, meta = done
            ctx.save(module, meta["model"])
