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
	widthMS := int64(0)
	for _, s := range series {
		for i := 1; i < len(s.Points); i++ {
			if d := s.Points[i].AtMS - s.Points[i-1].AtMS; widthMS == 0 || d < widthMS {
				widthMS = d
			}
		}
	}
	for i, s := range series {
		c := plotutil.Color(i)
		// A series is drawn as separate runs of consecutive buckets, so a line never
		// bridges a stretch of time in which that series sent nothing.
		for r, run := range runs(s.Points, widthMS) {
			p50, p99, failed := make(plotter.XYs, 0, len(run)), make(plotter.XYs, 0, len(run)), make(plotter.XYs, 0, len(run))
			for _, p := range run {
				x := float64(p.AtMS) / 1000
				p50 = append(p50, plotter.XY{X: x, Y: max(p.P50MS, 0.01)})
				p99 = append(p99, plotter.XY{X: x, Y: max(p.P99MS, 0.01)})
				failed = append(failed, plotter.XY{X: x, Y: float64(p.Failed)})
				ymin, ymax = min(ymin, max(p.P50MS, 0.01)), max(ymax, p.P99MS)
			}
			legend := func(suffix string) string {
				if r > 0 {
					return ""
				}
				return s.Name + suffix
			}
			if err := addLine(lat, p99, c, nil, legend(" p99")); err != nil {
				return err
			}
			if err := addLine(lat, p50, c, []vg.Length{vg.Points(4), vg.Points(3)}, legend(" p50")); err != nil {
				return err
			}
			if err := addLine(errs, failed, c, nil, legend("")); err != nil {
				return err
			}
		}
	}
	if ymax == 0 {
		ymin, ymax = 0.1, 1
	}
	lat.Y.Min, lat.Y.Max = ymin/1.5, ymax*20 // headroom above the data for the legend and event labels
	for k, e := range events {
		x := float64(e.AtMS) / 1000
		for _, p := range []*plot.Plot{lat, errs} {
			lo, hi := p.Y.Min, p.Y.Max
			if p == errs {
				lo, hi = 0, max(errs.Y.Max, 1)
			}
			if err := addLine(p, plotter.XYs{{X: x, Y: lo}, {X: x, Y: hi}}, color.RGBA{R: 200, A: 255}, []vg.Length{vg.Points(2), vg.Points(2)}, ""); err != nil {
				return err
			}
		}
		label, err := plotter.NewLabels(plotter.XYLabels{XYs: []plotter.XY{{X: x, Y: lat.Y.Max / math.Pow(4, float64(k%4+1))}}, Labels: []string{" " + e.Label}})
		if err != nil {
			return err
		}
		lat.Add(label)
	}
	lat.Legend.Top, lat.Legend.Left = true, true
	errs.Legend.Top, errs.Legend.Left = true, true
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

// runs splits points into stretches of consecutive buckets.
func runs(points []Point, widthMS int64) [][]Point {
	var out [][]Point
	start := 0
	for i := 1; i <= len(points); i++ {
		if i == len(points) || points[i].AtMS-points[i-1].AtMS > widthMS {
			out = append(out, points[start:i])
			start = i
		}
	}
	return out
}

// addLine draws xys as a line with a small dot on every point, so a one-bucket run shows.
func addLine(p *plot.Plot, xys plotter.XYs, c color.Color, dashes []vg.Length, legend string) error {
	if len(xys) == 0 {
		return nil
	}
	l, pts, err := plotter.NewLinePoints(xys)
	if err != nil {
		return err
	}
	l.Color, l.Dashes, l.Width = c, dashes, vg.Points(1.2)
	pts.Color, pts.Shape, pts.Radius = c, draw.CircleGlyph{}, vg.Points(1.3)
	p.Add(l, pts)
	if legend != "" {
		p.Legend.Add(legend, l)
	}
	return nil
}
