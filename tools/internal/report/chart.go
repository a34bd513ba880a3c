package report

import (
	"fmt"
	"image/color"
	"math"
	"os"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/plotutil"
	"gonum.org/v1/plot/vg"
	"gonum.org/v1/plot/vg/draw"
	"gonum.org/v1/plot/vg/vgimg"
)

// WriteChart draws latency (p50 dashed, p99 solid, log scale) above errors per bucket, with
// every event drawn as a vertical line on both, and saves it as a PNG.
func WriteChart(path, title string, series []SeriesSummary, events []Event) error {
	lat := plot.New()
	lat.Title.Text = title
	lat.Y.Label.Text = "latency (ms, log)"
	lat.Y.Scale = plot.LogScale{}
	lat.Y.Tick.Marker = plot.LogTicks{Prec: -1}
	errs := plot.New()
	errs.X.Label.Text = "seconds since start"
	errs.Y.Label.Text = "failed requests"

	ymin, ymax := 1e9, 0.0
	for i, s := range series {
		p50, p99, failed := make(plotter.XYs, 0, len(s.Points)), make(plotter.XYs, 0, len(s.Points)), make(plotter.XYs, 0, len(s.Points))
		for _, p := range s.Points {
			x := float64(p.AtMS) / 1000
			p50 = append(p50, plotter.XY{X: x, Y: max(p.P50MS, 0.01)})
			p99 = append(p99, plotter.XY{X: x, Y: max(p.P99MS, 0.01)})
			failed = append(failed, plotter.XY{X: x, Y: float64(p.Failed)})
			ymin, ymax = min(ymin, max(p.P50MS, 0.01)), max(ymax, p.P99MS)
		}
		c := plotutil.Color(i)
		if err := addLine(lat, p99, c, nil, s.Name+" p99"); err != nil {
			return err
		}
		if err := addLine(lat, p50, c, []vg.Length{vg.Points(4), vg.Points(3)}, s.Name+" p50"); err != nil {
			return err
		}
		if err := addLine(errs, failed, c, nil, s.Name); err != nil {
			return err
		}
	}
	if ymax == 0 {
		ymin, ymax = 0.1, 1
	}
	lat.Y.Min, lat.Y.Max = ymin/1.5, ymax*1.5
	for k, e := range events {
		x := float64(e.At.Milliseconds()) / 1000
		for _, p := range []*plot.Plot{lat, errs} {
			lo, hi := p.Y.Min, p.Y.Max
			if p == errs {
				lo, hi = 0, max(errs.Y.Max, 1)
			}
			if err := addLine(p, plotter.XYs{{X: x, Y: lo}, {X: x, Y: hi}}, color.RGBA{R: 200, A: 255}, []vg.Length{vg.Points(2), vg.Points(2)}, ""); err != nil {
				return err
			}
		}
		label, err := plotter.NewLabels(plotter.XYLabels{XYs: []plotter.XY{{X: x, Y: lat.Y.Max / math.Pow(1.6, float64(k%4+1))}}, Labels: []string{" " + e.Label}})
		if err != nil {
			return err
		}
		lat.Add(label)
	}
	lat.Legend.Top = true
	errs.Legend.Top = true
	lat.X.Min, errs.X.Min = 0, 0
	lat.X.Max = max(lat.X.Max, errs.X.Max)
	errs.X.Max = lat.X.Max

	const w, h = 26 * vg.Centimeter, 18 * vg.Centimeter
	img := vgimg.New(w, h)
	dc := draw.New(img)
	tiles := draw.Tiles{Rows: 2, Cols: 1, PadTop: vg.Millimeter * 2, PadBottom: vg.Millimeter * 2, PadX: vg.Millimeter * 2, PadY: vg.Millimeter * 4}
	plots := [][]*plot.Plot{{lat}, {errs}}
	canvases := plot.Align(plots, tiles, dc)
	lat.Draw(canvases[0][0])
	errs.Draw(canvases[1][0])

	f, err := os.Create(path)
	if err != nil {
		return err
	}
	defer f.Close()
	if _, err := (vgimg.PngCanvas{Canvas: img}).WriteTo(f); err != nil {
		return fmt.Errorf("writing %s: %w", path, err)
	}
	return f.Close()
}

func addLine(p *plot.Plot, xys plotter.XYs, c color.Color, dashes []vg.Length, legend string) error {
	if len(xys) == 0 {
		return nil
	}
	l, err := plotter.NewLine(xys)
	if err != nil {
		return err
	}
	l.Color, l.Dashes, l.Width = c, dashes, vg.Points(1.2)
	p.Add(l)
	if legend != "" {
		p.Legend.Add(legend, l)
	}
	return nil
}
