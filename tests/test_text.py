"""Text models: sequence layers, padding, gradient isolation, WordNet, serving strings."""

import json
import os
import subprocess
import sys

import keras
import numpy as np
import pytest
import tensorflow as tf

import al_keras
from al_keras import distribute
from al_keras.core import sequence
from al_keras.data import text as text_lib
from al_keras.data.tfds_builders import wordnet_nouns
from layer_test_helper import run_layer_test

HERE = os.path.dirname(os.path.abspath(__file__))
IDS = np.array([[5, 3, 9, 0, 0, 0], [2, 0, 0, 0, 0, 0], [7, 8, 1, 4, 6, 2],
                [0, 0, 0, 0, 0, 0]], "int32")  # The last: padding only.
WORDNET = "/usr/share/wordnet/data.noun"
SMALL = {"lstm": dict(embedding_dim=12, lstm_units=6, label_units=8),
         "transformer": dict(embedding_dim=12, num_heads=2, intermediate_dim=16,
                             label_units=8)}


def _masked(features, ids=IDS):
    """A masked sequence: `features` zero at padding, the mask appended."""
    mask = (ids != 0).astype("float32")[..., None]
    return np.concatenate([features * mask, mask], axis=-1).astype("float32")


def _text_model(name, method="al", sequence_length=6, vocab_size=10, num_classes=3,
                **options):
    return al_keras.models.get(name, sequence_length=sequence_length,
                               num_classes=num_classes, method=method,
                               vocab_size=vocab_size, **{**SMALL[name], **options})


# ------------------------------------------------------------------ layers
def test_masked_sequence_of_token_ids_appends_the_mask():
    layer = run_layer_test(
        sequence.MaskedSequence, {}, IDS, (4, 6, 9), expected_num_trainable_weights=1,
        make_init_kwargs=lambda: {"layer": keras.layers.Embedding(10, 8)})
    out = layer(IDS).numpy()
    np.testing.assert_array_equal(out[..., -1], IDS != 0)
    assert np.all(out[IDS == 0][:, :-1] == 0)  # Features zero at padding.


def test_masked_sequence_hands_keras_mask_to_a_bidirectional_lstm():
    inputs = _masked(np.random.default_rng(0).random((4, 6, 5)))
    layer = run_layer_test(
        sequence.MaskedSequence, {}, inputs, (4, 6, 7), expected_num_trainable_weights=6,
        make_init_kwargs=lambda: {"layer": keras.layers.Bidirectional(
            keras.layers.LSTM(3, return_sequences=True))})
    # The mask reached the LSTM: changing padded features changes nothing.
    noisy = inputs.copy()
    noisy[IDS == 0, :-1] = 7.0
    np.testing.assert_allclose(layer(noisy).numpy(), layer(inputs).numpy(), atol=1e-6)


def test_sequence_pooling_mean_and_last_read_tokens_only():
    features = np.random.default_rng(1).random((4, 6, 3)).astype("float32")
    inputs = _masked(features)
    mean = run_layer_test(sequence.SequencePooling, {"mode": "mean"}, inputs, (4, 3),
                          expected_num_trainable_weights=0)
    np.testing.assert_allclose(mean(inputs)[0], features[0, :3].mean(0), rtol=1e-6)
    np.testing.assert_allclose(mean(inputs)[3], 0.0)  # Padding only: zeros, no NaN.
    last = sequence.SequencePooling("last")(inputs).numpy()
    np.testing.assert_allclose(last[0], features[0, 2], rtol=1e-6)
    np.testing.assert_allclose(last[2], features[2, 5], rtol=1e-6)
    with pytest.raises(ValueError, match="Unknown sequence pooling 'max'"):
        sequence.SequencePooling("max")


def test_token_and_position_embedding():
    layer = run_layer_test(
        sequence.TokenAndPositionEmbedding,
        {"vocabulary_size": 10, "sequence_length": 6, "embedding_dim": 4},
        IDS, (4, 6, 4), expected_num_trainable_weights=2)
    # Shorter inputs take the first positions.
    np.testing.assert_allclose(layer(IDS[:, :3]).numpy(), layer(IDS).numpy()[:, :3],
                               atol=1e-6)


def test_transformer_encoder_ignores_padded_positions():
    features = np.random.default_rng(2).random((4, 6, 8)).astype("float32")
    layer = run_layer_test(sequence.TransformerEncoder,
                           {"num_heads": 2, "intermediate_dim": 16},
                           features, (4, 6, 8), expected_num_trainable_weights=16)
    mask = IDS != 0
    noisy = features.copy()
    noisy[~mask] = 5.0
    out, noisy_out = (layer(f, mask=mask).numpy() for f in (features, noisy))
    np.testing.assert_allclose(out[mask], noisy_out[mask], atol=1e-5)
    with pytest.raises(ValueError, match="does not divide by num_heads=3"):
        sequence.TransformerEncoder(3, 16)(features)


def test_bridge_pools_a_masked_sequence_first():
    inputs = _masked(np.random.default_rng(3).random((4, 6, 5)))
    layer = run_layer_test(
        al_keras.Bridge, {"units": 4, "hidden_multiplier": 0, "sequence_pooling": "mean"},
        inputs, (4, 4), expected_num_trainable_weights=2)
    assert layer.output_dense.kernel.shape == (5, 4)
    with pytest.raises(ValueError, match="takes a masked sequence"):
        al_keras.Bridge(4, sequence_pooling="mean")(np.zeros((2, 5), "float32"))


# ------------------------------------------------------------------ models
@pytest.mark.parametrize("name", ["lstm", "transformer"])
@pytest.mark.parametrize("method", ["al", "bp"])
def test_padding_changes_no_output(name, method):
    """The same sentences padded to 6 and to 12 tokens: the same
    probabilities at every exit (and, for AL, the same local losses)."""
    model = _text_model(name, method, sequence_length=12)
    short = IDS
    long = np.pad(IDS, ((0, 0), (0, 6)))
    if method == "bp":
        np.testing.assert_allclose(model(long).numpy(), model(short).numpy(), atol=1e-5)
        return
    for exit in (1, 2, 3):
        np.testing.assert_allclose(model(long, exit=exit).numpy(),
                                   model(short, exit=exit).numpy(), atol=1e-5)
    y = np.array([0, 1, 2, 1])
    for a, b in zip(*(model.local_losses(x, y)[:2] for x in (short, long))):
        np.testing.assert_allclose([v.numpy() for v in a], [v.numpy() for v in b],
                                   rtol=1e-5)
    probabilities = model(IDS).numpy()
    assert np.all(np.isfinite(probabilities))  # Padding only (row 3) too.
    np.testing.assert_allclose(probabilities.sum(-1), 1.0, rtol=1e-5)


@pytest.mark.parametrize("name", ["lstm", "transformer"])
def test_each_local_loss_of_a_sequence_model_reaches_only_its_own_part(name):
    model = _text_model(name)
    owners = {}
    for i, block in enumerate(model.blocks):
        owners.update({id(v): (i, "fb") for v in block.input_side_variables})
        owners.update({id(v): (i, "gh") for v in block.label_side_variables})
    variables = model.trainable_variables
    assert len(owners) == len(variables)
    with tf.GradientTape(persistent=True) as tape:
        assoc_losses, ae_losses, _ = model.local_losses(IDS, np.array([0, 1, 2, 1]),
                                                        training=True)
    for family, losses in (("fb", assoc_losses), ("gh", ae_losses)):
        for i, loss in enumerate(losses):
            grads = tape.gradient(loss, variables)
            reached = {owners[id(v)] for g, v in zip(grads, variables) if g is not None}
            assert reached == {(i, family)}, (name, family, i, reached)


def test_associate_wraps_plain_sequence_layers():
    model = al_keras.associate(
        [keras.layers.Embedding(10, 8),
         keras.layers.Bidirectional(keras.layers.LSTM(4, return_sequences=True))],
        num_classes=3, label_units=5, sequence_pooling="mean", input_shape=(6,),
        activation="tanh", output_loss="categorical_crossentropy")
    assert all(isinstance(b.encoder, sequence.MaskedSequence) for b in model.blocks)
    assert model.vocabulary_size == 10
    np.testing.assert_allclose(model(np.pad(IDS, ((0, 0), (0, 4)))).numpy(),
                               model(IDS).numpy(), atol=1e-5)


def test_token_ids_outside_the_vocabulary_are_one_clear_error():
    model = _text_model("lstm")
    model.compile(optimizer="adam")
    bad = IDS.copy()
    bad[0, 0] = 10
    with pytest.raises(al_keras.InputDataError,
                       match=r"token ids must be integers in \[0, 10\).*found 10"):
        model.fit(bad, np.zeros(4, "int32"), verbose=0)
    with pytest.raises(al_keras.InputDataError, match=r"takes inputs of shape \(batch, 6\)"):
        model.predict(np.zeros((2, 9), "int32"), verbose=0)


# ----------------------------------------------------------------- WordNet
_HEADER = ("  1 This software and database is being provided to you, the LICENSEE\n"
           "  2 by Princeton University under the following license.\n")


def _synset_line(offset, file_number, words, gloss):
    fields = " ".join(f"{w} 0" for w in words)
    return (f"{offset:08d} {file_number:02d} n {len(words):02x} {fields} 001 @ "
            f"00001740 n 0000 | {gloss}  \n")


def _write_data_noun(folder, per_class=10):
    lines = [_HEADER]
    offset = 1000
    for file_number, topic in ((5, "animal"), (13, "food"), (20, "plant")):
        for i in range(per_class):
            offset += 1
            lines.append(_synset_line(offset, file_number, [f"{topic}_{i}", "alias"],
                                      f"a {topic} called w{offset}; \"an example\""))
    path = os.path.join(folder, "data.noun")
    with open(path, "w") as f:
        f.writelines(lines)
    return path


def test_wordnet_parser_skips_the_header_and_reads_each_field(tmp_path):
    path = _write_data_noun(tmp_path)
    synsets = wordnet_nouns.parse_data_noun(path)
    assert len(synsets) == 30
    offset, label, words, gloss = synsets[0]
    assert offset == "00001001"
    assert wordnet_nouns.NOUN_SUPERSENSES[label] == "noun.animal"
    assert words == "animal 0 alias"
    assert gloss == 'a animal called w1001; "an example"'
    assert wordnet_nouns.NOUN_SUPERSENSES[synsets[-1][1]] == "noun.plant"
    with open(path, "a") as f:
        f.write("00009999 44 n 01 word 0 000 | a gloss\n")
    with pytest.raises(al_keras.data.datasets.DataFileError,
                       match=r"line 33 is malformed \(lexicographer file 44"):
        wordnet_nouns.parse_data_noun(path)


def test_wordnet_builder_split_is_stratified_and_stable(tmp_path, monkeypatch):
    source = tmp_path / "wordnet"
    source.mkdir()
    _write_data_noun(source)
    test_sets = []
    for run in range(2):  # Two preparations in two TFDS folders.
        monkeypatch.setenv("TFDS_DATA_DIR", str(tmp_path / f"tfds_{run}"))
        data = al_keras.data.datasets.load("wordnet", batch_size=8, data_dir=str(source),
                                           sequence_length=8, vocab_size=100)
        assert (data.num_train, data.num_test, data.num_classes) == (27, 3, 26)
        labels = np.concatenate([y.numpy() for _, y in data.test])
        assert sorted(labels) == [2, 10, 17]  # One of each class: 10%, stratified.
        test_sets.append([x.numpy().tolist() for x, _ in data.test])
        # The vocabulary comes from the training split only: each gloss's
        # own word w<offset> is in it for the 27 training synsets alone.
        own_words = [w for w in data.preprocessor.get_vocabulary() if w.startswith("w1")]
        assert len(own_words) == 27 and "alias" not in own_words
    assert test_sets[0] == test_sets[1]
    monkeypatch.setenv("TFDS_DATA_DIR", str(tmp_path / "tfds_0"))
    with pytest.raises(al_keras.data.datasets.DataFileError, match="holds no data.noun"):
        al_keras.data.datasets.load("wordnet", batch_size=8, data_dir=str(tmp_path))


def test_stratified_split_keeps_one_of_a_small_class_for_training():
    labels = [0] * 20 + [1] * 2 + [2]
    test = wordnet_nouns.stratified_split(labels)
    assert test[:20].sum() == 2 and test[20:22].sum() == 1 and not test[22]


def test_stock_text_sets_offline_fail_fast_saying_how(tmp_path, monkeypatch):
    monkeypatch.setattr(al_keras.data.datasets, "can_connect", lambda *a, **k: False)
    with pytest.raises(al_keras.data.datasets.DatasetUnavailableError,
                       match=r"tfds build ag_news_subset --data_dir=DIR"):
        al_keras.data.datasets.load("ag_news", batch_size=8, data_dir=str(tmp_path))


# ------------------------------------------------------------ string serving
@pytest.mark.slow
@pytest.mark.parametrize("name", ["lstm", "transformer"])
def test_exported_text_model_serves_strings_without_al_keras(name, tmp_path):
    texts = ["a small dog", "the red car drove far", "", "dog " * 40,
             "unseen zebra words"]
    train = np.array(["a small dog", "a big cat", "the red car", "a blue truck"] * 8)
    if name == "lstm":  # A user's own adapted vectorizer.
        vectorizer = keras.layers.TextVectorization(max_tokens=20, output_sequence_length=8)
        vectorizer.adapt(train)
    else:  # al_keras.data's.
        vectorizer = text_lib.adapted_vectorizer(tf.data.Dataset.from_tensor_slices(train),
                                                 vocab_size=20, sequence_length=8)
    model = _text_model(name, sequence_length=8, vocab_size=vectorizer.vocabulary_size(),
                        num_classes=2, preprocessor=vectorizer)
    model.compile(optimizer=keras.optimizers.Adam(1e-2))
    model.fit(vectorizer(train), np.array([0, 0, 1, 1] * 8), epochs=2, verbose=0)
    model.export(tmp_path / "export")
    # Saved with the model: the vocabulary comes back in a .keras reload.
    model.save(tmp_path / "model.keras")
    reloaded = keras.models.load_model(tmp_path / "model.keras")
    assert reloaded.preprocessor.get_vocabulary() == vectorizer.get_vocabulary()

    ids = vectorizer(tf.constant(texts))
    with open(tmp_path / "texts.json", "w") as f:
        json.dump({"texts": texts, "token_ids": ids.numpy().tolist()}, f)
    proc = subprocess.run(
        [sys.executable, os.path.join(HERE, "serve_text_export.py"),
         str(tmp_path / "export"), str(tmp_path / "texts.json"), str(tmp_path / "out.npz")],
        capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    served = np.load(tmp_path / "out.npz")
    assert ids.shape == (5, 8)  # The 40-word text truncated to 8 tokens.
    np.testing.assert_allclose(served["saved/token_ids"], served["saved/serving_default"],
                               atol=1e-6)
    if name == "transformer":  # TFLite's built-in ops run it.
        np.testing.assert_allclose(served["tflite/token_ids"],
                                   served["saved/token_ids"], atol=1e-5)
    else:  # Keras 3's LSTM is a TensorList while-loop, which they lack.
        assert "TensorList" in served["tflite_error"].item()
    np.testing.assert_allclose(served["saved/serving_default"],
                               model.predict(ids, verbose=0), atol=1e-5)
    for exit in (1, 2, 3):
        np.testing.assert_allclose(served[f"saved/exit_{exit}"],
                                   model.predict(ids, exit=exit, verbose=0), atol=1e-5)
    # The adaptive path of a text model (mask carried block to block) serves too.
    adaptive = model.predict(ids, exit="adaptive", threshold=0.5, verbose=0)
    np.testing.assert_allclose(served["saved/adaptive_threshold"],
                               adaptive["probabilities"], atol=1e-5)
    np.testing.assert_array_equal(served["saved/adaptive_threshold/exit"], adaptive["exit"])
    np.testing.assert_allclose(served["saved/adaptive"], served["saved/serving_default"],
                               atol=1e-6)  # Not calibrated: the full path.
    np.testing.assert_allclose(served["saved/serving_default"].sum(-1), 1.0, rtol=1e-5)
    assert served["wrong_input_error"].item().startswith(("TypeError", "ValueError",
                                                          "InvalidArgumentError"))


# ----------------------------------------------------------- distribution
@pytest.mark.slow
def test_pipelined_text_model_computes_what_sequential_fit_computes(cpu_devices):
    rng = np.random.default_rng(0)
    x = rng.integers(1, 10, (96, 6)).astype("int32")
    x[:, 4:][rng.random((96, 2)) < 0.5] = 0
    y = rng.integers(0, 3, 96)
    keras.utils.set_random_seed(3)
    sequential = _text_model("transformer")
    sequential.compile(optimizer=keras.optimizers.Adam(3e-3))
    strategy = distribute.BlockParallel(cpu_devices)
    with strategy.scope():
        keras.utils.set_random_seed(3)
        pipelined = _text_model("transformer")
        pipelined.compile(optimizer=keras.optimizers.Adam(3e-3))
    pipelined.set_weights(sequential.get_weights())
    for model in (sequential, pipelined):
        model.fit(x, y, batch_size=16, epochs=2, shuffle=False, verbose=0)
    assert strategy.examples_trained() == [2 * 96] * 3
    compared = 0
    for a, b in zip(sequential.weights, pipelined.weights):
        # The attention's key bias has a zero gradient in exact arithmetic
        # (softmax ignores a shift shared by all keys): Adam turns its
        # rounding noise into steps that differ from one run to the next.
        if "key" in a.path and "bias" in a.path:
            continue
        np.testing.assert_allclose(a.numpy(), b.numpy(), atol=1e-5, err_msg=a.path)
        compared += 1
    assert compared == len(sequential.weights) - 2  # One key bias per block.


@pytest.mark.slow
def test_wordnet_lstm_al_and_bp_learn_a_subset(tmp_path):
    """Real Debian WordNet: 8,000 glosses, 3 epochs each (under a minute each
    on 2 cores; pytest --durations shows it, no timing is asserted)."""
    if not os.path.exists(WORDNET):
        pytest.skip("Debian's wordnet-base is not installed (.ci/run installs it)")
    data = al_keras.data.datasets.load("wordnet", batch_size=64, sequence_length=24,
                                       vocab_size=8000, max_train_examples=8000,
                                       max_test_examples=2000)
    accuracies = {}
    for method in ("al", "bp"):
        keras.utils.set_random_seed(0)
        model = al_keras.models.get(
            "lstm", sequence_length=24, num_classes=data.num_classes, method=method,
            vocab_size=data.preprocessor.vocabulary_size(), embedding_dim=32,
            lstm_units=32, num_layers=1, label_units=64)
        model.compile(optimizer=keras.optimizers.Adam(3e-3), metrics=["accuracy"])
        model.fit(data.train_epochs(0), epochs=3, steps_per_epoch=125, verbose=0)
        accuracies[method] = model.evaluate(data.test, verbose=0,
                                            return_dict=True)["accuracy"]
    # Chance (the most frequent class) is 0.14.
    assert accuracies["al"] >= 0.45 and accuracies["bp"] >= 0.45, accuracies


@pytest.mark.slow
def test_text_run_resumed_from_a_checkpoint_ends_as_the_uninterrupted_run(
        tmp_path, monkeypatch):
    """train.py's library on a tiny data.noun, 3 epochs; the same run with its
    last checkpoint removed resumes from epoch 2 and ends with the same
    metrics (its vectorizer from the run's saved vocabulary.txt)."""
    import shutil

    from al_keras.training import config_lib, runs, train_lib

    source = tmp_path / "wordnet"
    source.mkdir()
    _write_data_noun(source, per_class=40)
    monkeypatch.setenv("TFDS_DATA_DIR", str(tmp_path / "tfds"))
    config = config_lib.load_config_module(
        os.path.join(os.path.dirname(HERE), "configs", "wordnet.py")).get_config(
            "model=lstm,smoke")
    config.data_dir, config.epochs, config.export = str(source), 3, False
    first = tmp_path / "first"
    results = train_lib.train_and_evaluate(config, str(first), verbose=0)
    saved = keras.models.load_model(first / "checkpoints" / "epoch_0003.keras")
    assert (first / "vocabulary.txt").read_text().splitlines() == (
        saved.preprocessor.get_vocabulary()[2:])
    assert len(results["exit_test_macro_f1"]) == 2 and 0 <= results["test_macro_f1"] <= 1
    second = tmp_path / "second"
    shutil.copytree(first, second)
    (second / "checkpoints" / "epoch_0003.keras").unlink()
    (second / "results.json").unlink()
    again = train_lib.train_and_evaluate(config, str(second), verbose=0)
    rows = [runs.read_metrics(str(d)) for d in (first, second)]
    assert [r["epoch"] for r in rows[1]] == [0, 1, 2]
    for a, b in zip(*rows):
        for key in ("loss", "accuracy", "val_accuracy", "val_exit_1_accuracy"):
            assert a[key] == pytest.approx(b[key], abs=1e-5), key
    assert again["test_accuracy"] == pytest.approx(results["test_accuracy"], abs=1e-6)


def test_the_embedding_can_join_the_first_sequence_block():
    model = _text_model("transformer", sequence_length=12, separate_embedding=False)
    assert model.num_blocks == 2 and model.vocabulary_size == 10
    assert isinstance(model.blocks[0].encoder, keras.Sequential)
    np.testing.assert_allclose(model(np.pad(IDS, ((0, 0), (0, 6)))).numpy(),
                               model(IDS).numpy(), atol=1e-5)
