"""Live plots of a fine-tune run: generator loss, discriminator loss and validation Dice per region.

The x axis is in epochs everywhere. The losses gain a faint point per training step (x = epochs as a
fraction: 1.25 is a quarter into epoch 2), so the run visibly moves within an epoch that takes
minutes on a CPU, and a bold point per epoch (the epoch's mean); the validation Dice one per epoch,
the base model at 0.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import pyqtgraph as pg
from PySide6.QtCore import QSize, Qt
from PySide6.QtWidgets import QWidget

from brainseg_gui.core.labels import REGIONS
from brainseg_gui.ui.overlay import COLOURS

BACKGROUND = "#1e2127"
#: Behind a legend: the background, nearly opaque, so the curves under it do not garble its text.
LEGEND_BRUSH = (30, 33, 39, 210)
G_COLOUR = (230, 190, 60)
D_COLOUR = (180, 130, 255)
#: Binary cross-entropy of a discriminator that cannot tell real from generated (ln 2).
CHANCE = 0.693
#: Step curves drop their dots beyond this many points (a GPU run sends thousands; dots cost time).
MAX_STEP_SYMBOLS = 400
#: The step curves are the epoch curves' colour, this transparent (0-255).
STEP_ALPHA = 110


class FinetunePlots(pg.GraphicsLayoutWidget):
    """Three plots side by side; losses per step and per epoch, Dice per epoch."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setBackground(BACKGROUND)
        self.setMinimumSize(480, 200)
        self.g_plot = self._plot("Generator loss", "G = adv + λ·rec")
        self.d_plot = self._plot("Discriminator loss", "BCE")
        self.dice_plot = self._plot("Validation Dice", "Dice")
        self.dice_plot.setYRange(0.0, 1.0)
        self.dice_plot.addLegend(offset=(-5, -5), labelTextSize="8pt", brush=LEGEND_BRUSH)
        self.d_plot.addLine(y=CHANCE, pen=pg.mkPen((120, 120, 120), style=Qt.PenStyle.DashLine))
        self.g_plot.addLegend(offset=(-5, 5), labelTextSize="8pt", brush=LEGEND_BRUSH)
        self.curves: dict[str, pg.PlotDataItem] = {
            "G step": self._step_curve(self.g_plot, G_COLOUR, "each step"),
            "D step": self._step_curve(self.d_plot, D_COLOUR, "each step"),
            "G": self._curve(self.g_plot, G_COLOUR, "epoch mean"),
            "D": self._curve(self.d_plot, D_COLOUR, "D"),
        }
        for region in REGIONS:
            self.curves[region] = self._curve(self.dice_plot, COLOURS[region], region)
        self._data: dict[str, tuple[list[float], list[float]]] = {name: ([], []) for name in self.curves}
        self._right = 0.0  # the furthest x shown so far (steps and epochs may arrive in either order)
        self._fit_epochs(0)

    def sizeHint(self) -> QSize:
        """A modest fixed wish: the view's own hint follows its current size, so inside a scroll area
        (the panel's columns) it would keep the plots as tall as they once were and push the results
        out of view. The layout still stretches the plots over any spare room."""
        return QSize(720, 260)

    def _plot(self, title: str, axis: str) -> pg.PlotItem:
        plot = self.addPlot(title=f"<span style='font-size:9pt'>{title}</span>")
        plot.setLabel("bottom", "epoch")
        plot.setLabel("left", axis)
        plot.getAxis("left").enableAutoSIPrefix(False)  # losses near 0.7 read as 0.7, not 700 x 0.001
        plot.getAxis("left").setWidth(58)  # room for the tick labels and the title, whatever the values
        plot.showGrid(x=True, y=True, alpha=0.2)
        plot.setMouseEnabled(x=False, y=False)
        plot.hideButtons()
        return plot

    @staticmethod
    def _curve(plot: pg.PlotItem, colour: tuple[int, int, int], name: str) -> pg.PlotDataItem:
        return plot.plot([], [], pen=pg.mkPen(colour, width=2), symbol="o", symbolSize=5,
                         symbolBrush=colour, symbolPen=None, name=name)

    @staticmethod
    def _step_curve(plot: pg.PlotItem, colour: tuple[int, int, int], name: str) -> pg.PlotDataItem:
        faint = (*colour, STEP_ALPHA)
        return plot.plot([], [], pen=pg.mkPen(faint, width=1), symbol="o", symbolSize=3, symbolBrush=faint,
                         symbolPen=None, name=name)

    def clear_run(self) -> None:
        for name, curve in self.curves.items():
            self._data[name] = ([], [])
            curve.setData([], [])
        self._right = 0.0
        self._fit_epochs(0)

    def add_epoch(self, epoch: int, g_loss: float, d_loss: float | None, dice: Mapping[str, float] | None) -> None:
        """One point per series (D only when the adversarial term is on; Dice when validated)."""
        values: dict[str, float] = {"G": g_loss}
        if d_loss is not None:
            values["D"] = d_loss
        for region in REGIONS:
            if dice and region in dice:
                values[region] = dice[region]
        for name, value in values.items():
            xs, ys = self._data[name]
            xs.append(float(epoch))
            ys.append(float(value))
            self.curves[name].setData(xs, ys)
        self._fit_epochs(epoch)

    def add_step(self, position: float, g_loss: float, d_loss: float | None) -> None:
        """One training step's losses at `position` (epochs as a fraction, StepDone.position)."""
        values = {"G step": g_loss} if d_loss is None else {"G step": g_loss, "D step": d_loss}
        for name, value in values.items():
            xs, ys = self._data[name]
            xs.append(float(position))
            ys.append(float(value))
            self.curves[name].setData(xs, ys, symbol="o" if len(xs) <= MAX_STEP_SYMBOLS else None)
        self._fit_epochs(position)

    def _fit_epochs(self, last: float) -> None:
        """Whole epochs on the x axes, from 0 (the base model) to at least 2 (1.25 -> up to 2)."""
        self._right = max(self._right, float(last))
        right = max(2, math.ceil(self._right))
        step = max(1, math.ceil(right / 8))
        for plot in (self.g_plot, self.d_plot, self.dice_plot):
            plot.setXRange(0, right, padding=0.04)
            plot.getAxis("bottom").setTickSpacing(step, step)

    def add_baseline(self, dice: Mapping[str, float]) -> None:
        """The base model's validation Dice as epoch 0 (where the curves start from)."""
        for region in REGIONS:
            if region in dice:
                xs, ys = self._data[region]
                xs.insert(0, 0.0)
                ys.insert(0, float(dice[region]))
                self.curves[region].setData(xs, ys)

    def points(self) -> dict[str, tuple[list[float], list[float]]]:
        """Series name -> (x in epochs, values) as plotted (tests and screenshots read this).

        "G" and "D" are the epoch means; "G step" and "D step" the steps; WT, TC, ET the Dice.
        """
        return {name: (list(xs), list(ys)) for name, (xs, ys) in self._data.items()}
