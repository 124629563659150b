"""Tiny random models of every non-BERT architecture, built from transformers config classes, with a tokenizer of
the family's kind (byte-level BPE for RoBERTa, Unigram for DeBERTa-v3, WordPiece for ModernBERT), each trained
in-process on the fixture texts: nothing is downloaded.

Each entry of ARCH_FIXTURES gives one `tiny_<name>_base` and one LoRA model directory `tiny_<name>_lora` with
the architecture's default targets and head modules from the native registry; make_fixtures.py adds a token
classification LoRA `tiny_<name>_token_lora` on each base.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers
from transformers import (
    AutoTokenizer,
    DebertaV2Config,
    ModernBertConfig,
    PretrainedConfig,
    PreTrainedTokenizerFast,
    RobertaConfig,
)

TINY = {"hidden_size": 32, "num_attention_heads": 4, "initializer_range": 0.1}


def train_corpus(texts: Sequence[str]) -> list[str]:
    # A few repetitions so merges and pieces form; the golden edge cases cover unicode and whitespace.
    from lorakit.golden import EDGE_CASE_TEXTS, long_text

    return [*texts, *EDGE_CASE_TEXTS, long_text(8)] * 3


def roberta_tokenizer(texts: Sequence[str]) -> PreTrainedTokenizerFast:
    specials = ["<s>", "<pad>", "</s>", "<unk>", "<mask>"]
    tok = Tokenizer(models.BPE(unk_token=None))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.train_from_iterator(train_corpus(texts), trainers.BpeTrainer(
        vocab_size=600, special_tokens=specials, initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False))
    tok.post_processor = processors.RobertaProcessing(("</s>", 2), ("<s>", 0), trim_offsets=True,
                                                      add_prefix_space=False)
    return PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<s>", eos_token="</s>", cls_token="<s>",
                                   sep_token="</s>", unk_token="<unk>", pad_token="<pad>", mask_token="<mask>")


def unigram_tokenizer(texts: Sequence[str]) -> PreTrainedTokenizerFast:
    specials = ["[PAD]", "[CLS]", "[SEP]", "[UNK]", "[MASK]"]
    tok = Tokenizer(models.Unigram())
    tok.normalizer = normalizers.Sequence([normalizers.NFKC(), normalizers.Replace("\t", " ")])
    tok.pre_tokenizer = pre_tokenizers.Metaspace()
    tok.decoder = decoders.Metaspace()
    tok.train_from_iterator(train_corpus(texts), trainers.UnigramTrainer(
        vocab_size=400, special_tokens=specials, unk_token="[UNK]", show_progress=False))
    tok.post_processor = processors.TemplateProcessing(single="[CLS] $A [SEP]", pair="[CLS] $A [SEP] $B [SEP]",
                                                       special_tokens=[("[CLS]", 1), ("[SEP]", 2)])
    return PreTrainedTokenizerFast(tokenizer_object=tok, cls_token="[CLS]", sep_token="[SEP]", unk_token="[UNK]",
                                   pad_token="[PAD]", mask_token="[MASK]")


def wordpiece_tokenizer(_texts: Sequence[str]) -> Any:
    from lorakit.models import minilm_path

    return AutoTokenizer.from_pretrained(minilm_path())


@dataclass(frozen=True)
class ArchFixture:
    name: str
    tokenizer: Callable[[Sequence[str]], Any]
    config: Callable[[Any], PretrainedConfig]
    labels: tuple[str, ...]
    token_labels: tuple[str, ...] = ("O", "B-PER", "I-PER", "B-LOC", "I-LOC")  # IOB2 tags of tiny_<name>_token_lora


def roberta_config(tok: Any) -> PretrainedConfig:
    return RobertaConfig(vocab_size=len(tok), num_hidden_layers=2, intermediate_size=64, max_position_embeddings=66,
                         type_vocab_size=1, pad_token_id=1, bos_token_id=0, eos_token_id=2, layer_norm_eps=1e-5,
                         **TINY)


def modernbert_config(pooling: str) -> Callable[[Any], PretrainedConfig]:
    def build(tok: Any) -> PretrainedConfig:
        # Four layers: global, local, local, global; a window of 4 on each side is shorter than most texts.
        return ModernBertConfig(vocab_size=len(tok), num_hidden_layers=4, intermediate_size=48,
                                max_position_embeddings=64, local_attention=8, classifier_pooling=pooling,
                                pad_token_id=tok.pad_token_id, cls_token_id=tok.cls_token_id,
                                sep_token_id=tok.sep_token_id, bos_token_id=tok.cls_token_id,
                                eos_token_id=tok.sep_token_id, **TINY)

    return build


def deberta_v3_config(tok: Any) -> PretrainedConfig:
    # DeBERTa-v3 layout: relative attention with log buckets, shared attention keys, no absolute positions.
    return DebertaV2Config(vocab_size=len(tok), num_hidden_layers=2, intermediate_size=64,
                           max_position_embeddings=64, relative_attention=True, position_buckets=16,
                           max_relative_positions=-1, pos_att_type=["p2c", "c2p"], share_att_key=True,
                           norm_rel_ebd="layer_norm", position_biased_input=False, type_vocab_size=0,
                           pad_token_id=0, pooler_hidden_size=32, pooler_hidden_act="gelu", layer_norm_eps=1e-7,
                           **TINY)


def deberta_v2_config(tok: Any) -> PretrainedConfig:
    # DeBERTa-v2 layout: separate position projections, no buckets, absolute positions added to the input.
    return DebertaV2Config(vocab_size=len(tok), num_hidden_layers=2, intermediate_size=64,
                           max_position_embeddings=64, relative_attention=True, position_buckets=-1,
                           max_relative_positions=24, pos_att_type="c2p|p2c", share_att_key=False,
                           position_biased_input=True, type_vocab_size=0, pad_token_id=0, pooler_hidden_size=32,
                           pooler_hidden_act="gelu", layer_norm_eps=1e-7, **TINY)


ARCH_FIXTURES: tuple[ArchFixture, ...] = (
    # Token tags in other orders too: no runtime may assume that label 0 is "O".
    ArchFixture("roberta", roberta_tokenizer, roberta_config, ("negative", "neutral", "positive"),
                ("B-LOC", "I-LOC", "O", "B-PER", "I-PER")),
    ArchFixture("modernbert", wordpiece_tokenizer, modernbert_config("cls"), ("billing", "card", "other")),
    ArchFixture("modernbert_mean", wordpiece_tokenizer, modernbert_config("mean"), ("benign", "malicious"),
                ("B-ORG", "I-ORG", "O")),
    ArchFixture("debertav3", unigram_tokenizer, deberta_v3_config, ("benign", "injection", "jailbreak"),
                ("I-PER", "B-PER", "O", "B-LOC", "I-LOC")),
    ArchFixture("debertav2", unigram_tokenizer, deberta_v2_config, ("a", "b")),
)


def build_arch_fixture(fixture: ArchFixture, out: Path, texts: Sequence[str], max_seq_len: int,
                       save_base: Callable[[Any, Any, Path], Path],
                       export_lora: Callable[[Path, Path, Sequence[str], Sequence[str]], Path]) -> list[Path]:
    """`save_base(model, tokenizer, dir)` writes a base directory, `export_lora(base, out, labels, texts)` an
    adapter model directory (the callers' helpers, shared with the BERT fixtures)."""
    import torch
    from transformers import AutoModel

    tokenizer = fixture.tokenizer(texts)
    torch.manual_seed(sum(map(ord, fixture.name)))
    model = AutoModel.from_config(fixture.config(tokenizer)).eval()
    base = save_base(model, tokenizer, out / f"tiny_{fixture.name}_base")
    lora = export_lora(base, out / f"tiny_{fixture.name}_lora", fixture.labels, texts)
    return [base, lora]
