//! The topology as a self-contained SVG that stays readable with many routers: networks
//! that routers share (an external network, a tenant network between routers) are drawn
//! once, as bars across the top; each router is a cell of a grid below them, with its own
//! networks and their instances inside it. Lines from a cell to the bars run in a corridor
//! left of its column, deeper rows further left, so no line crosses a label. Every label
//! has a row of its own in its cell, and cells and columns are as wide as their longest
//! label (`text_width`): nothing is cut and nothing overlaps.

use super::{Attachment, InstanceView, NetworkView, RouterView, Topology};

/// The widest picture the grid aims for: the columns are as many as fit.
const MAX_WIDTH: i64 = 4000;
const MARGIN: i64 = 20;
/// The height of a row of 10 px text.
const ROW: i64 = 16;
/// Between two lines in a corridor or gutter.
const PITCH: i64 = 6;
/// Between cells, and between the bars and the grid.
const GAP: i64 = 24;
const RED: &str = "#d9534f";
const GREY: &str = "#555555";

/// The width `text` takes at `size` px: 0.65 em a character, above the average of a
/// sans-serif face for names, addresses and digits, so a label never runs past its room.
pub fn text_width(text: &str, size: i64) -> i64 {
    ceil_div(text.chars().count() as i64 * size * 65, 100)
}

fn ceil_div(a: i64, b: i64) -> i64 {
    (a + b - 1) / b
}

fn xml(text: &str) -> String {
    super::xml(text)
}

/// What a picture is drawn with, in its cell's coordinates until placed.
enum Shape {
    Line(i64, i64, i64, i64, &'static str, bool),
    Bar(i64, i64, i64, &'static str, bool),
    Dot(i64, i64, &'static str),
    Rect(i64, i64, i64, i64, &'static str, bool),
    Text(i64, i64, i64, bool, String),
}

impl Shape {
    fn shifted(self, dx: i64, dy: i64) -> Shape {
        match self {
            Shape::Line(x1, y1, x2, y2, c, d) => {
                Shape::Line(x1 + dx, y1 + dy, x2 + dx, y2 + dy, c, d)
            }
            Shape::Bar(x1, x2, y, c, d) => Shape::Bar(x1 + dx, x2 + dx, y + dy, c, d),
            Shape::Dot(x, y, c) => Shape::Dot(x + dx, y + dy, c),
            Shape::Rect(x, y, w, h, f, m) => Shape::Rect(x + dx, y + dy, w, h, f, m),
            Shape::Text(x, y, s, b, t) => Shape::Text(x + dx, y + dy, s, b, t),
        }
    }

    fn render(&self) -> String {
        let dash = |d: bool| if d { " stroke-dasharray=\"4 3\"" } else { "" };
        match self {
            Shape::Line(x1, y1, x2, y2, c, d) => format!(
                "<line x1=\"{x1}\" y1=\"{y1}\" x2=\"{x2}\" y2=\"{y2}\" stroke=\"{c}\"{}/>",
                dash(*d)
            ),
            Shape::Bar(x1, x2, y, c, d) => format!(
                "<line class=\"bar\" x1=\"{x1}\" y1=\"{y}\" x2=\"{x2}\" y2=\"{y}\" stroke=\"{c}\" stroke-width=\"5\"{}/>",
                dash(*d)
            ),
            Shape::Dot(x, y, c) => format!("<circle cx=\"{x}\" cy=\"{y}\" r=\"4\" fill=\"{c}\"/>"),
            Shape::Rect(x, y, w, h, fill, missing) => format!(
                "<rect x=\"{x}\" y=\"{y}\" width=\"{w}\" height=\"{h}\" rx=\"6\" fill=\"{fill}\" stroke=\"{}\"{}/>",
                if *missing { RED } else { GREY },
                dash(*missing)
            ),
            Shape::Text(x, y, size, bold, text) => format!(
                "<text x=\"{x}\" y=\"{y}\" font-size=\"{size}\"{}>{}</text>",
                if *bold { " font-weight=\"bold\"" } else { "" },
                xml(text)
            ),
        }
    }
}

fn color(missing: bool) -> &'static str {
    if missing {
        RED
    } else {
        GREY
    }
}

fn network_color(n: &NetworkView) -> &'static str {
    match (n.missing, n.external) {
        (true, _) => RED,
        (false, true) => "#e69138",
        (false, false) => "#3d85c6",
    }
}

fn network_label(n: &NetworkView) -> String {
    format!(
        "{}{} {} [{}]{}",
        n.name,
        if n.external { " (external)" } else { "" },
        n.subnets.join(", "),
        n.bridge,
        if n.missing { " MISSING" } else { "" }
    )
}

fn link_label(a: &Attachment) -> String {
    format!(
        "{} {}{}",
        a.device,
        a.addresses.join(", "),
        if a.missing { " ✗ MISSING" } else { "" }
    )
}

/// A router's or instance's box: its title and lines of words.
struct Node {
    title: String,
    lines: Vec<String>,
    fill: &'static str,
    missing: bool,
}

impl Node {
    fn router(r: &RouterView) -> Node {
        let mut lines = vec![format!("SNAT {}", if r.snat { "on" } else { "off" })];
        lines.extend(r.floating_ips.iter().map(|f| {
            let to = f
                .instance
                .as_deref()
                .map(|i| format!(" ({i})"))
                .unwrap_or_default();
            format!("floating IP {} → {}{to}", f.address, f.fixed_ip)
        }));
        lines.extend(r.routes.iter().map(|x| format!("route {x}")));
        Node {
            title: format!(
                "router {}{}",
                r.name,
                if r.missing { " (MISSING)" } else { "" }
            ),
            lines,
            fill: "#fff2cc",
            missing: r.missing,
        }
    }

    fn instance(i: &InstanceView) -> Node {
        Node {
            title: format!(
                "instance {}{}",
                i.name,
                if i.missing { " (MISSING)" } else { "" }
            ),
            lines: i.interface.iter().map(link_label).collect(),
            fill: "#e2f0d9",
            missing: i.missing,
        }
    }

    fn width(&self) -> i64 {
        let lines = self.lines.iter().map(|l| text_width(l, 10));
        lines
            .chain([text_width(&self.title, 12)])
            .max()
            .unwrap_or(0)
            + 16
    }

    fn height(&self) -> i64 {
        22 + 14 * self.lines.len() as i64
    }

    /// Drawn with its top left corner at (x, y).
    fn draw(&self, x: i64, y: i64, out: &mut Vec<Shape>) {
        out.push(Shape::Rect(
            x,
            y,
            self.width(),
            self.height(),
            self.fill,
            self.missing,
        ));
        out.push(Shape::Text(x + 8, y + 16, 12, true, self.title.clone()));
        for (i, line) in self.lines.iter().enumerate() {
            out.push(Shape::Text(
                x + 8,
                y + 30 + 14 * i as i64,
                10,
                false,
                line.clone(),
            ));
        }
    }
}

/// A network of one router's (or of no router's), with the instances on it.
struct Private<'a> {
    network: &'a NetworkView,
    /// The router's device on it.
    link: Option<&'a Attachment>,
    instances: Vec<&'a InstanceView>,
}

/// One cell of the grid: a router (or an instance on a shared network) with the shared
/// networks it is on, or a network no router shares with another, and what is inside.
struct Cell<'a> {
    node: Option<Node>,
    uplinks: Vec<&'a Attachment>,
    privates: Vec<Private<'a>>,
}

/// A cell drawn in its own coordinates: its shapes, its size, where each uplink ends (the
/// network it goes to, and the height of its row) and the bus that takes them to the box.
struct Drawn<'a> {
    shapes: Vec<Shape>,
    width: i64,
    height: i64,
    uplinks: Vec<(&'a Attachment, i64)>,
    bus: i64,
}

/// Room right of a label.
const PAD: i64 = 8;

/// A cell being drawn: its shapes, and how wide they reach.
#[derive(Default)]
struct Canvas {
    shapes: Vec<Shape>,
    width: i64,
}

impl Canvas {
    fn push(&mut self, shape: Shape) {
        self.shapes.push(shape);
    }

    /// A label of 10 px text, its baseline at `y`.
    fn text(&mut self, x: i64, y: i64, bold: bool, label: String) {
        self.fit(x + text_width(&label, 10));
        self.push(Shape::Text(x, y, 10, bold, label));
    }

    fn node(&mut self, node: &Node, x: i64, y: i64) {
        self.fit(x + node.width());
        node.draw(x, y, &mut self.shapes);
    }

    fn fit(&mut self, right: i64) {
        self.width = self.width.max(right + PAD);
    }
}

impl<'a> Cell<'a> {
    fn draw(self) -> Drawn<'a> {
        let mut c = Canvas::default();
        let p = self.privates.len() as i64;
        // The gutter of the lines from the box down to its networks' bars, left of all text;
        // the bar of a later network is further left, so no line crosses an earlier bar.
        let gutter = 10 + PITCH * p;
        let down_x = |k: usize| 4 + PITCH * (p - 1 - k as i64);
        let bus = gutter + 8;
        let mut y = 0;
        let mut uplinks = Vec::new();
        for a in &self.uplinks {
            c.text(bus + 8, y + 12, false, link_label(a));
            uplinks.push((*a, y + 8));
            y += ROW;
        }
        // Where each network's line leaves the box: a later network's higher up, so that
        // a stub never crosses another network's line.
        let mut stubs = vec![y; self.privates.len()];
        if let Some(node) = &self.node {
            let top = y + 4;
            // The uplinks come in from the corridor on the left, over a bus down to the box.
            if let Some((_, first)) = uplinks.first() {
                c.push(Shape::Line(bus, *first, bus, top, GREY, false));
            }
            c.node(node, gutter, top);
            let bottom = top + node.height();
            for (k, stub) in stubs.iter_mut().enumerate() {
                *stub = bottom - 8 - (node.height() - 16) * k as i64 / p.max(1);
            }
            y = bottom + 8;
        }
        for (k, private) in self.privates.iter().enumerate() {
            if let Some(link) = private.link {
                c.text(gutter, y + 12, false, link_label(link));
                y += ROW;
            }
            c.text(gutter, y + 12, true, network_label(private.network));
            let bar = y + ROW + 4;
            let start = match private.link {
                Some(link) => {
                    let (x, color, d) = (down_x(k), color(link.missing), link.missing);
                    c.push(Shape::Line(gutter, stubs[k], x, stubs[k], color, d));
                    c.push(Shape::Line(x, stubs[k], x, bar, color, d));
                    c.push(Shape::Dot(x, bar, color));
                    x
                }
                None => 0,
            };
            let n = private.network;
            c.push(Shape::Bar(
                start,
                i64::MAX,
                bar,
                network_color(n),
                n.missing,
            ));
            y = bar + 10;
            // Each instance hangs from the bar on a line of its own, left of every box, a
            // deeper one's further left, so that no line crosses another.
            let m = private.instances.len() as i64;
            let left = gutter + 8 + PITCH * m;
            for (i, instance) in private.instances.iter().enumerate() {
                let node = Node::instance(instance);
                let x = gutter + 4 + PITCH * (m - 1 - i as i64);
                let missing = instance.interface.as_ref().is_some_and(|a| a.missing);
                let color = color(missing);
                c.push(Shape::Line(x, bar, x, y + 12, color, missing));
                c.push(Shape::Line(x, y + 12, left, y + 12, color, missing));
                c.node(&node, left, y);
                y += node.height() + 8;
            }
            y += 6;
        }
        // Bars run to the cell's right edge.
        let width = c.width;
        for s in &mut c.shapes {
            if let Shape::Bar(_, x2, ..) = s {
                *x2 = (*x2).min(width);
            }
        }
        Drawn {
            shapes: c.shapes,
            width,
            height: y,
            uplinks,
            bus,
        }
    }
}

/// Shared networks: external ones, and those two routers or more are on.
fn shared(t: &Topology) -> Vec<&NetworkView> {
    t.networks
        .iter()
        .filter(|n| {
            let routers = t
                .routers
                .iter()
                .filter(|r| r.interfaces.iter().any(|a| a.network == n.name));
            n.external || routers.count() >= 2
        })
        .collect()
}

fn cells<'a>(t: &'a Topology, shared: &[&NetworkView]) -> Vec<Cell<'a>> {
    let is_shared = |name: &str| shared.iter().any(|n| n.name == name);
    let instances_on = |name: &str| -> Vec<&InstanceView> {
        let on = |i: &&InstanceView| i.interface.as_ref().is_some_and(|a| a.network == name);
        t.instances.iter().filter(on).collect()
    };
    let mut cells: Vec<Cell> = t
        .routers
        .iter()
        .map(|r| Cell {
            node: Some(Node::router(r)),
            uplinks: r
                .interfaces
                .iter()
                .filter(|a| is_shared(&a.network))
                .collect(),
            privates: r
                .interfaces
                .iter()
                .filter(|a| !is_shared(&a.network))
                .filter_map(|a| {
                    Some(Private {
                        network: t.networks.iter().find(|n| n.name == a.network)?,
                        link: Some(a),
                        instances: instances_on(&a.network),
                    })
                })
                .collect(),
        })
        .collect();
    for i in &t.instances {
        if let Some(a) = i.interface.as_ref().filter(|a| is_shared(&a.network)) {
            cells.push(Cell {
                node: Some(Node::instance(i)),
                uplinks: vec![a],
                privates: vec![],
            });
        }
    }
    for n in &t.networks {
        let routed = t
            .routers
            .iter()
            .any(|r| r.interfaces.iter().any(|a| a.network == n.name));
        if !routed && !is_shared(&n.name) {
            cells.push(Cell {
                node: None,
                uplinks: vec![],
                privates: vec![Private {
                    network: n,
                    link: None,
                    instances: instances_on(&n.name),
                }],
            });
        }
    }
    cells
}

pub fn svg(t: &Topology) -> String {
    let shared = shared(t);
    let drawn: Vec<Drawn> = cells(t, &shared).into_iter().map(Cell::draw).collect();
    let labels: Vec<String> = shared.iter().map(|n| network_label(n)).collect();
    // The shared bars' labels in a column of their own, left of every corridor.
    let label_width = labels
        .iter()
        .map(|l| text_width(l, 12))
        .max()
        .map_or(0, |w| w + GAP);
    let bar_y = |i: usize| MARGIN + 8 + 30 * i as i64;
    let grid_x = MARGIN + label_width;
    let grid_top = bar_y(shared.len()) + GAP;
    let cell_width = drawn.iter().map(|d| d.width).max().unwrap_or(0);
    let n = drawn.len().max(1) as i64;
    let corridor_for = |rows: i64| {
        12 + PITCH
            * rows
            * drawn
                .iter()
                .map(|d| d.uplinks.len() as i64)
                .max()
                .unwrap_or(0)
    };
    // As many columns as fit, and no more than a wide rectangle of cells needs.
    let mut cols = (1..=n).take_while(|c| c * c <= 2 * n).last().unwrap_or(1) + 1;
    cols = cols.min(n);
    while cols > 1
        && grid_x + cols * (corridor_for(ceil_div(n, cols)) + cell_width + GAP) + MARGIN > MAX_WIDTH
    {
        cols -= 1;
    }
    let rows = ceil_div(n, cols);
    let corridor = corridor_for(rows);
    let column = corridor + cell_width + GAP;
    let width = grid_x + cols * column + MARGIN;
    let mut row_tops = vec![grid_top];
    for r in 0..rows as usize {
        let in_row = drawn.iter().skip(r * cols as usize).take(cols as usize);
        let height = in_row.map(|d| d.height).max().unwrap_or(0);
        row_tops.push(row_tops[r] + height + GAP);
    }
    let height = row_tops[rows as usize] + MARGIN;
    let mut shapes = Vec::new();
    for (i, (net, label)) in shared.iter().zip(&labels).enumerate() {
        shapes.push(Shape::Text(MARGIN, bar_y(i) + 4, 12, true, label.clone()));
        shapes.push(Shape::Bar(
            grid_x,
            width - MARGIN,
            bar_y(i),
            network_color(net),
            net.missing,
        ));
    }
    // The corridor of each column: the lines of deeper rows further left.
    let mut used = vec![0; cols as usize];
    for (k, cell) in drawn.into_iter().enumerate() {
        let (r, c) = (k as i64 / cols, (k as i64 % cols) as usize);
        let (x, y) = (grid_x + c as i64 * column + corridor, row_tops[r as usize]);
        for (a, row) in &cell.uplinks {
            let Some(i) = shared.iter().position(|n| n.name == a.network) else {
                continue;
            };
            used[c] += 1;
            let lane = x - PITCH * used[c];
            let (c_, d) = (color(a.missing), a.missing);
            shapes.push(Shape::Dot(lane, bar_y(i), c_));
            shapes.push(Shape::Line(lane, bar_y(i), lane, y + row, c_, d));
            shapes.push(Shape::Line(lane, y + row, x + cell.bus, y + row, c_, d));
        }
        shapes.extend(cell.shapes.into_iter().map(|s| s.shifted(x, y)));
    }
    let mut out = format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{width}\" height=\"{height}\" viewBox=\"0 0 {width} {height}\" font-family=\"sans-serif\">\n<title>qrouter topology</title>\n<rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n"
    );
    for s in &shapes {
        out += &s.render();
        out.push('\n');
    }
    out + "</svg>\n"
}
