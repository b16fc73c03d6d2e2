#include "train/plot.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>

#include "train/data/atomic_file.hpp"

namespace dssm::train {
namespace {

struct Point {
  double x, y;
};

// Points (step, loss) of one kind with a finite loss.
std::vector<Point> series(const std::vector<nlohmann::json>& records, const std::string& kind) {
  std::vector<Point> out;
  for (const auto& r : records) {
    if (r.value("kind", "") != kind || !r.contains("loss") || !r["loss"].is_number()) continue;
    const double loss = r["loss"].get<double>();
    if (std::isfinite(loss)) out.push_back({r["step"].get<double>(), loss});
  }
  return out;
}

std::vector<Point> moving_average(const std::vector<Point>& points, size_t window) {
  std::vector<Point> out;
  double sum = 0.0;
  for (size_t i = 0; i < points.size(); ++i) {
    sum += points[i].y;
    if (i >= window) sum -= points[i - window].y;
    const size_t n = std::min(i + 1, window);
    out.push_back({points[i].x, sum / static_cast<double>(n)});
  }
  return out;
}

// About `count` round tick values (1, 2 or 5 times a power of ten apart) covering [lo, hi].
std::vector<double> ticks(double lo, double hi, int count) {
  const double raw = (hi - lo) / count;
  const double magnitude = std::pow(10.0, std::floor(std::log10(raw)));
  double step = magnitude;
  for (double m : {1.0, 2.0, 5.0, 10.0}) {
    step = m * magnitude;
    if (step >= raw) break;
  }
  std::vector<double> out;
  for (double v = std::ceil(lo / step) * step; v <= hi + 1e-9 * step; v += step) out.push_back(v);
  return out;
}

}  // namespace

std::string loss_curve_svg(const std::vector<nlohmann::json>& records, const std::string& title) {
  constexpr double kWidth = 760, kHeight = 440, kLeft = 64, kRight = 24, kTop = 40, kBottom = 52;
  const std::vector<Point> train = series(records, "train");
  const std::vector<Point> eval = series(records, "eval");
  std::string svg = fmt::format(
      "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{0}\" height=\"{1}\" "
      "viewBox=\"0 0 {0} {1}\" font-family=\"sans-serif\" font-size=\"12\">\n"
      "<rect width=\"{0}\" height=\"{1}\" fill=\"white\"/>\n"
      "<text x=\"{2}\" y=\"24\" font-size=\"15\">{3}</text>\n",
      kWidth, kHeight, kLeft, title);
  if (train.empty() && eval.empty())
    return svg + "<text x=\"64\" y=\"80\">no data yet</text>\n</svg>\n";

  double x_max = 1, y_lo = INFINITY, y_hi = -INFINITY;
  for (const auto* s : {&train, &eval}) {
    for (const Point& p : *s) {
      x_max = std::max(x_max, p.x);
      y_lo = std::min(y_lo, p.y);
      y_hi = std::max(y_hi, p.y);
    }
  }
  const double pad = std::max(1e-3, 0.05 * (y_hi - y_lo));
  y_lo -= pad, y_hi += pad;
  const double plot_w = kWidth - kLeft - kRight, plot_h = kHeight - kTop - kBottom;
  const auto sx = [&](double x) { return kLeft + x / x_max * plot_w; };
  const auto sy = [&](double y) { return kTop + (y_hi - y) / (y_hi - y_lo) * plot_h; };

  // Grid, ticks and axis labels.
  for (double v : ticks(y_lo, y_hi, 6)) {
    svg += fmt::format(
        "<line x1=\"{0}\" x2=\"{1}\" y1=\"{2:.1f}\" y2=\"{2:.1f}\" stroke=\"#ddd\"/>"
        "<text x=\"{3}\" y=\"{4:.1f}\" text-anchor=\"end\">{5:g}</text>\n",
        kLeft, kLeft + plot_w, sy(v), kLeft - 6, sy(v) + 4, v);
  }
  for (double v : ticks(0, x_max, 8)) {
    svg += fmt::format(
        "<line x1=\"{0:.1f}\" x2=\"{0:.1f}\" y1=\"{1}\" y2=\"{2}\" stroke=\"#ddd\"/>"
        "<text x=\"{0:.1f}\" y=\"{3}\" text-anchor=\"middle\">{4:g}</text>\n",
        sx(v), kTop, kTop + plot_h, kTop + plot_h + 16, v);
  }
  svg += fmt::format(
      "<rect x=\"{}\" y=\"{}\" width=\"{}\" height=\"{}\" fill=\"none\" stroke=\"#444\"/>\n"
      "<text x=\"{}\" y=\"{}\" text-anchor=\"middle\">step</text>\n"
      "<text transform=\"translate(16 {}) rotate(-90)\" text-anchor=\"middle\">loss (nats per "
      "token)</text>\n",
      kLeft, kTop, plot_w, plot_h, kLeft + plot_w / 2, kHeight - 12, kTop + plot_h / 2);

  const auto polyline = [&](const std::vector<Point>& points, const char* colour, double width) {
    std::string path;
    for (const Point& p : points) path += fmt::format("{:.1f},{:.1f} ", sx(p.x), sy(p.y));
    return fmt::format(
        "<polyline fill=\"none\" stroke=\"{}\" stroke-width=\"{}\" points=\"{}\"/>\n", colour,
        width, path);
  };
  svg += polyline(train, "#9ecae1", 1);
  svg += polyline(moving_average(train, std::max<size_t>(1, train.size() / 100)), "#08519c", 2);
  svg += polyline(eval, "#e6550d", 1.5);
  for (const Point& p : eval) {
    svg += fmt::format("<circle cx=\"{:.1f}\" cy=\"{:.1f}\" r=\"3.5\" fill=\"#e6550d\"/>\n",
                       sx(p.x), sy(p.y));
  }
  // Legend, top right.
  const double lx = kLeft + plot_w - 190, ly = kTop + 16;
  svg += fmt::format(
      "<line x1=\"{0}\" x2=\"{1}\" y1=\"{2}\" y2=\"{2}\" stroke=\"#08519c\" stroke-width=\"2\"/>"
      "<text x=\"{3}\" y=\"{4}\">train loss (moving average)</text>\n"
      "<circle cx=\"{5}\" cy=\"{6}\" r=\"3.5\" fill=\"#e6550d\"/>"
      "<text x=\"{3}\" y=\"{7}\">validation loss</text>\n",
      lx, lx + 20, ly, lx + 26, ly + 4, lx + 10, ly + 18, ly + 22);
  return svg + "</svg>\n";
}

void write_loss_curve(const std::string& path, const std::vector<nlohmann::json>& records,
                      const std::string& title) {
  const std::string svg = loss_curve_svg(records, title);
  data::AtomicFile file(path);
  file.write(svg.data(), svg.size());
  file.commit();
}

}  // namespace dssm::train
