"""`model_identity`: how the manifest names each model a run used, whatever form the model was given in."""

from __future__ import annotations

import hashlib

from deita.manifest import model_identity


def test_a_single_weights_file_is_named_by_its_name_and_size(tmp_path):
    weights = tmp_path / "model.Q4_1.gguf"
    weights.write_bytes(b"GGUF" + bytes(60))
    entry = model_identity("ifd scorer", str(weights))
    assert entry == {"role": "ifd scorer", "model": str(weights),
                     "config_and_weights_sha256": hashlib.sha256(b"model.Q4_1.gguf\0" + b"64").hexdigest()}


def test_a_folder_hashes_its_config_and_weight_names(tmp_path):
    (tmp_path / "config.json").write_text("{}")
    (tmp_path / "model.safetensors").write_bytes(b"x")
    expected = hashlib.sha256(b"{}")
    expected.update(b"model.safetensors")
    assert model_identity("embedding model", str(tmp_path))["config_and_weights_sha256"] == expected.hexdigest()


def test_a_path_that_is_neither_there_nor_a_hub_id_has_no_revision(tmp_path):
    missing = str(tmp_path / "no" / "such.gguf")
    assert model_identity("ifd scorer", missing) == {"role": "ifd scorer", "model": missing, "revision": None}
