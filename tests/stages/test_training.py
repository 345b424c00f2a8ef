"""The GAN trainer: a run shorter than an epoch counts exactly the batches that will run."""

from __future__ import annotations

from hydra.utils import instantiate

from pirtune.compose import the_run
from pirtune.stages.training import gan_trainer


def test_a_run_shorter_than_an_epoch_has_an_epoch_of_its_iterations(make_cfg):
    cfg = make_cfg()
    datamodule = instantiate(cfg.data)
    datamodule.setup("fit")
    batches = len(datamodule.train_dataloader())
    assert batches == 4   # 32 images, 8 a batch
    short = gan_trainer(the_run(cfg), [], [], 3, datamodule)
    assert short.limit_train_batches == 3 and short.fit_loop.max_epochs == 1
    long = gan_trainer(the_run(cfg), [], [], 10, datamodule)
    assert long.limit_train_batches == 1.0 and long.fit_loop.max_epochs == 3
