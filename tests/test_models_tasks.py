"""Each task's loss is the formula it names, and its metrics (torchmetrics) give the textbook values."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from trainlab.models import MLPClassifier, MLPRegressor, UNetSegmenter
from trainlab.models.losses import segmentation_loss, soft_dice_loss

pytestmark = pytest.mark.filterwarnings("ignore:You are trying to `self.log")


def _classifier(**kwargs) -> MLPClassifier:
    torch.manual_seed(0)
    return MLPClassifier(hidden_sizes=[16], input_shape=[6], **kwargs)


def test_label_smoothing_is_applied_in_training_only():
    model = _classifier(num_classes=4, label_smoothing=0.2)
    x, y = torch.randn(32, 6), torch.randint(0, 4, (32,))
    logits = model(x)

    assert model.shared_step((x, y), "train").item() == pytest.approx(F.cross_entropy(logits, y, label_smoothing=0.2).item(), rel=1e-5)
    assert model.shared_step((x, y), "val").item() == pytest.approx(F.cross_entropy(logits, y).item(), rel=1e-5)
    # Smoothing punishes confidence: a confident, correct prediction costs more than without it.
    confident = torch.full((1, 4), -10.0)
    confident[0, 2] = 10.0
    assert model.loss(confident, torch.tensor([2]), 0.2) > model.loss(confident, torch.tensor([2]), 0.0) + 0.1


def test_bce_classifier_has_one_logit_and_reports_two_class_scores():
    model = _classifier(num_classes=2, loss="bce")
    assert model.net.layers[-1].out_features == 1
    x, y = torch.randn(32, 6), torch.randint(0, 2, (32,))
    z = model.net(x)[:, 0]
    logits = model(x)

    assert logits.shape == (32, 2)
    assert torch.allclose(logits.softmax(1)[:, 1], torch.sigmoid(z), atol=1e-6)
    assert model.shared_step((x, y), "val").item() == pytest.approx(F.binary_cross_entropy_with_logits(z, y.float()).item(), rel=1e-5)


def _regressor(loss: str) -> MLPRegressor:
    torch.manual_seed(0)
    return MLPRegressor(hidden_sizes=[8], loss=loss, num_outputs=1, input_shape=[3], target_mean=150.0, target_std=50.0)


def test_regressor_predicts_in_data_units_and_learns_standardised_targets():
    x, y = torch.randn(20, 3), 150 + 50 * torch.randn(20)
    for loss, formula in (("mse", F.mse_loss), ("mae", F.l1_loss)):
        model = _regressor(loss)
        raw = model.net(x)[:, 0]
        prediction = model(x)[:, 0]
        assert torch.allclose(prediction, raw * 50 + 150)
        assert model.shared_step((x, y), "val").item() == pytest.approx(formula(raw, (y - 150) / 50).item(), rel=1e-5)

    # Metrics are in the target's units: an error of exactly 10 everywhere is MAE 10, MSE 100.
    model = _regressor("mse")
    metrics = model.metrics["test_metrics"]
    metrics.update(y + 10, y)
    values = metrics.compute()
    assert values["test/mae"].item() == pytest.approx(10.0)
    assert values["test/mse"].item() == pytest.approx(100.0)
    assert values["test/r2"].item() == pytest.approx(1 - 100 / y.var(unbiased=False).item(), rel=1e-4)


def _masks():
    target = torch.zeros(1, 4, 4, dtype=torch.long)
    target[0, 0, :] = 1  # 4 foreground pixels in the top row
    predicted = torch.zeros(1, 4, 4, dtype=torch.long)
    predicted[0, 0, :2] = 1  # 2 of them found ...
    predicted[0, 1, :2] = 1  # ... and 2 false alarms
    return predicted, target


def test_dice_and_iou_metrics_give_textbook_values():
    predicted, target = _masks()
    model = UNetSegmenter(width=4, depth=1, num_classes=2, input_shape=[1, 4, 4])
    metrics = model.metrics["val_metrics"]
    metrics.update(predicted, target)
    values = metrics.compute()
    # Dice = 2|A∩B| / (|A|+|B|) = 4/8; IoU = |A∩B| / |A∪B| = 2/6; background left out of both.
    assert values["val/dice"].item() == pytest.approx(0.5)
    assert values["val/iou"].item() == pytest.approx(1 / 3)


def test_multiclass_segmentation_metrics_average_the_foreground_classes():
    model = UNetSegmenter(width=4, depth=1, num_classes=3, input_shape=[1, 4, 4])
    assert model.net.head.out_channels == 3
    target = torch.zeros(1, 4, 4, dtype=torch.long)
    target[0, 0] = 1
    target[0, 3] = 2
    predicted = target.clone()
    predicted[0, 3, :2] = 0  # class 2 half found: Dice 2·2/(2+4) = 2/3, IoU 2/4; class 1 perfect
    metrics = model.metrics["test_metrics"]
    metrics.update(predicted, target)
    values = metrics.compute()
    assert values["test/dice"].item() == pytest.approx((1 + 2 / 3) / 2)
    assert values["test/iou"].item() == pytest.approx((1 + 0.5) / 2)


def test_dice_loss_bce_and_their_sum():
    target = torch.zeros(2, 8, 8, dtype=torch.long)
    target[:, 2:6, 2:6] = 1
    right = (target.float() * 2 - 1).unsqueeze(1) * 20  # confident and correct logits
    assert soft_dice_loss(right, target).item() < 0.01
    assert soft_dice_loss(-right, target).item() > 0.95

    logits = torch.randn(2, 1, 8, 8)
    bce = F.binary_cross_entropy_with_logits(logits[:, 0], target.float())
    assert segmentation_loss("bce", logits, target).item() == pytest.approx(bce.item(), rel=1e-6)
    assert segmentation_loss("bce_dice", logits, target).item() == pytest.approx(bce.item() + soft_dice_loss(logits, target).item(), rel=1e-6)

    # Multi-class: softmax cross-entropy, and Dice over the foreground classes.
    many = torch.randn(2, 3, 8, 8)
    labels = torch.randint(0, 3, (2, 8, 8))
    assert segmentation_loss("bce", many, labels).item() == pytest.approx(F.cross_entropy(many, labels).item(), rel=1e-6)
    perfect = F.one_hot(labels, 3).permute(0, 3, 1, 2).float() * 30
    assert segmentation_loss("dice", perfect, labels).item() < 0.01


def test_segmenter_returns_class_logits_whose_argmax_is_the_mask():
    torch.manual_seed(0)
    model = UNetSegmenter(width=4, depth=2, num_classes=2, input_shape=[1, 16, 16])
    x = torch.randn(3, 1, 16, 16)
    logits = model(x)
    assert logits.shape == (3, 2, 16, 16)
    assert torch.equal(logits.argmax(1), (model.net(x)[:, 0] > 0).long())


class _BatchLosses(__import__("lightning").Callback):
    """Records each training batch's loss and size, and what callbacks read as the epoch's train/loss."""

    def __init__(self) -> None:
        self.batches: list[list[tuple[float, int]]] = []
        self.seen: list[float] = []

    def on_train_epoch_start(self, trainer, pl_module) -> None:
        self.batches.append([])

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        self.batches[-1].append((float(outputs["loss"]), len(batch[-1])))

    def on_validation_end(self, trainer, pl_module) -> None:
        dict(trainer.callback_metrics)  # as ModelCheckpoint does, also after a validation run in mid-epoch

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        self.seen.append(float(trainer.callback_metrics["train/loss"]))


def test_epoch_loss_is_the_batch_size_weighted_mean_callbacks_see_at_epoch_end():
    """Uneven last batch, validation twice per epoch: callbacks still read the whole epoch's weighted mean."""
    import lightning as L

    from trainlab.datamodules import Digits

    data = Digits(batch_size=100, val_fraction=0.15)
    data.prepare_data()
    facts = data.describe()
    torch.manual_seed(0)
    model = MLPClassifier(hidden_sizes=[16], input_shape=facts["input_shape"], num_classes=facts["num_classes"])
    record = _BatchLosses()
    trainer = L.Trainer(
        max_epochs=3, val_check_interval=0.5, logger=False, enable_checkpointing=False, enable_progress_bar=False,
        enable_model_summary=False, callbacks=[record],
    )  # fmt: skip
    trainer.fit(model, datamodule=data)

    assert len(record.batches) == 3 and len({size for _, size in record.batches[0]}) == 2  # a short last batch
    for batches, seen in zip(record.batches, record.seen):
        expected = sum(loss * size for loss, size in batches) / sum(size for _, size in batches)
        assert seen == pytest.approx(expected, rel=1e-5)
    assert record.seen[0] != pytest.approx(record.seen[-1])  # a fresh mean each epoch
    assert set(trainer.callback_metrics) >= {"train/loss", "val/loss", "val/acc", "train/acc"}


def test_classifier_accuracy_and_macro_f1_equal_torchmetrics_own_including_absent_classes():
    """One confusion matrix gives what MulticlassAccuracy(micro) and MulticlassF1Score(macro) would report."""
    from torchmetrics.classification import MulticlassAccuracy, MulticlassF1Score

    from trainlab.models.classification import AccuracyAndF1

    generator = torch.Generator().manual_seed(0)
    for classes in (2, 3, 10):
        ours, accuracy, f1 = AccuracyAndF1(classes), MulticlassAccuracy(classes, average="micro"), MulticlassF1Score(classes, average="macro")
        for batch in range(3):
            logits = torch.randn(17, classes, generator=generator)
            labels = torch.randint(0, max(1, classes - batch), (17,), generator=generator)  # later batches miss classes
            for metric in (ours, accuracy, f1):
                metric.update(logits, labels)
        values = ours.compute()
        assert values["acc"].item() == pytest.approx(accuracy.compute().item(), abs=1e-6)
        assert values["f1"].item() == pytest.approx(f1.compute().item(), abs=1e-6)
