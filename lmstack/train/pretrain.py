"""``lmstack train``: pretrain a Transformer on shards from ``lmstack prepare``, by next-token prediction
(a decoder) or masked-language modelling (a BERT encoder).

The command only picks the objective and its data; ``train.trainer.Trainer`` does the rest (the loop,
evaluation, atomic checkpoints with every RNG so ``--resume`` reaches exactly an uninterrupted run's losses).
"""

from __future__ import annotations

from lmstack.data.noise import reweighted
from lmstack.data.shards import TokenShards
from lmstack.errors import LmstackError
from lmstack.text.tokenizer import Tokenizer
from lmstack.train.checkpoint import check_run_dir, discard_checkpoint
from lmstack.train.config import TrainConfig
from lmstack.train.objectives.causal import CausalLM
from lmstack.train.objectives.denoising import UL2, Infilling, SpanCorruption
from lmstack.train.objectives.mlm import MaskedLM
from lmstack.train.objectives.prefix_lm import PrefixLMObjective
from lmstack.train.trainer import Trainer

OBJECTIVES = {
    "causal": CausalLM,  # next-token prediction with a decoder (Radford et al. 2018)
    "mlm": MaskedLM,  # masked-language modelling with a bidirectional encoder (Devlin et al. 2019)
    "prefix_lm": PrefixLMObjective,  # a decoder, bidirectional over a random prefix, loss on the suffix (T5 sec. 3.2)
    "span_corruption": SpanCorruption,  # an encoder-decoder fills sentinel-marked spans (Raffel et al. 2020)
    "infilling": Infilling,  # an encoder-decoder restores text with Poisson(3) spans masked (BART, Lewis et al. 2020)
    "ul2": UL2,  # an encoder-decoder on UL2's mixture of R / X / S denoisers with mode tokens (Tay et al. 2022)
}


def train(cfg: TrainConfig, resume: bool = False, overwrite: bool = False) -> dict:
    """Pretrain a Transformer on token shards; writes checkpoints, metrics.jsonl, loss.png and model/.

    An earlier run in OUT is refused unless --resume or --overwrite is given, and nothing is written before the
    inputs are checked (the shards open, both splits fill a block, the model builds or the checkpoint loads).

    Args:
        cfg: the run's configuration (--config FILE.yaml, then --key value overrides, e.g. --model.n_layer 6)
        resume: continue from OUT/checkpoint exactly where it stopped
        overwrite: start afresh although OUT holds an earlier run (otherwise that is refused)
    """
    check_run_dir(cfg.out, resume, overwrite)
    tokenizer = Tokenizer.load(cfg.data)
    model_cfg = cfg.model.replace(vocab_size=tokenizer.vocab_size)
    shards = {split: TokenShards(cfg.data, split) for split in ("train", "val")}
    for split in shards.values():
        split.check_block(model_cfg.block_size)
    mixture = {"denoisers": reweighted(cfg.ul2_weights)} if cfg.ul2_weights is not None else {}  # ul2 only
    objective = OBJECTIVES[cfg.objective](shards["train"], shards["val"], cfg.batch_size, model_cfg.block_size,
                                          model_cfg, tokenizer, **mixture)
    if cfg.z_loss and type(objective).loss is not CausalLM.loss:
        raise LmstackError(f"z_loss: the {cfg.objective} objective has its own loss without the z-loss; use "
                           "--z_loss with the causal or mlm objective")
    objective.z_loss = cfg.z_loss
    trainer = Trainer(objective, cfg, cfg.out, resume=resume, config_name="train_config.json")
    if overwrite:
        discard_checkpoint(cfg.out)
    result = trainer.run()
    return {**result, "out": str(cfg.out), "model": str(cfg.out / "model"), "params": trainer.model.num_params()}
