"""The seed toolkit's documented API keeps working over the new core."""

import importlib.util
import json

import numpy as np
import pytest
from builders import sharegpt

from deita.data.records import Turn
from deita.errors import DeitaError
from deita.pipeline import Pipeline
from deita.scoring.backends.base import ScorerSpec
from deita.scoring.backends.vllm import VLLMOptions
from deita.scoring.scorer import ScoreConfig, ScoreWorker
from deita.selection.scorer import Llama_Scorer


def test_llama_scorer_matches_core(tiny_llama):
    scorer = Llama_Scorer(str(tiny_llama))
    core = ScoreWorker(ScoreConfig(type="quality", model=str(tiny_llama)))
    assert scorer.infer_quality("Q?", "A.") == pytest.approx(core.score([Turn("Q?", "A.")])[0], abs=1e-6)
    assert 1.0 <= scorer.infer_complexity("Write a haiku") <= 6.0


def test_score_embed_filter_pipelines(tmp_path, tiny_llama):
    data = tmp_path / "pool.json"
    data.write_text(json.dumps([sharegpt(("human", f"q{i} " * (i + 1)), ("gpt", f"a{i} " * (i + 2)), id=i)
                                for i in range(12)]))
    for score_type, src, dst in (("complexity", data, "c.json"), ("quality", tmp_path / "c.json", "cq.json")):
        Pipeline("score_pipeline", data_path=str(src), scorer="llama", scorer_name_or_path=str(tiny_llama),
                 is_vllm=False, score_type=score_type, output_path=str(tmp_path / dst)).run()
    Pipeline("embed_pipeline", data_path=str(tmp_path / "cq.json"), output_path=str(tmp_path / "emb.pkl"),
             model_name_or_path=str(tiny_llama), max_length=64, batch_size_per_device=2,
             conv_template="vicuna_v1.1", only_answer=False, bfloat16=True).run()
    assert not (tmp_path / "emb.pkl").exists()
    assert np.load(tmp_path / "emb.npy").shape == (12, 64)
    Pipeline("filter_pipeline", data_path=str(tmp_path / "cq.json"), other_data_path=str(tmp_path / "emb.pkl"),
             threshold=0.9, data_size=5, chunk_size=4, sort_key="complexity_scores,quality_scores",
             output_path=str(tmp_path / "sel.json"), distance_metric="cosine", embedding_field="embedding",
             is_compression=False, device="cpu").run()
    selected = json.loads((tmp_path / "sel.json").read_text())
    assert len(selected) == 5 and all("quality_scores" in r for r in selected)


def test_pipeline_option_errors():
    with pytest.raises(DeitaError, match="did you mean 'data_size'"):
        Pipeline("filter_pipeline", data_path="a", other_data_path="b", output_path="c", datasize=3)
    with pytest.raises(DeitaError, match="missing required key"):
        Pipeline("score_pipeline", data_path="a")


def test_is_vllm_scores_on_the_vllm_backend_with_its_own_options(tmp_path, tiny_llama):
    options = Pipeline("score_pipeline", data_path="pool.json", output_path="out.json", is_vllm=True,
                       scorer_name_or_path=str(tiny_llama), score_type="quality", max_length=512).options
    config = options.score_config()
    assert config.backend == "vllm" and config.backend_options() == VLLMOptions()
    assert config.scorer_spec() == ScorerSpec(str(tiny_llama), max_length=512, batch_tokens=config.batch_tokens)
    if importlib.util.find_spec("vllm") is None:  # the seed's is_vllm path reaches the backend and says what to do
        data = tmp_path / "pool.json"
        data.write_text(json.dumps([sharegpt(("human", "q"), ("gpt", "a"))]))
        with pytest.raises(DeitaError, match=r"pip install -e '\.\[vllm\]'"):
            Pipeline("score_pipeline", data_path=str(data), output_path=str(tmp_path / "out.json"), is_vllm=True,
                     scorer_name_or_path=str(tiny_llama)).run()
        with pytest.raises(DeitaError, match="needs the vllm package"):
            Llama_Scorer(str(tiny_llama), is_vllm=True)


def test_score_pipeline_checks_options_like_the_cli():
    with pytest.raises(DeitaError, match="'qualty' is not one of complexity, quality, ifd, signals; did you mean 'quality'"):
        Pipeline("score_pipeline", data_path="a", output_path="b", scorer_name_or_path="m",
                 score_type="qualty").run()
    with pytest.raises(DeitaError, match=r"batch_tokens \(100\) must be at least max_length"):
        Pipeline("score_pipeline", data_path="a", output_path="b", scorer_name_or_path="m", batch_tokens=100).run()
