// The ringkv console: polls the node's /console/api every 2 s and draws
// the cluster, the ring, running work and the charts (SVG rendered by the
// node). No framework, no external files.
"use strict";

const REFRESH_MS = 2000;
const COLORS = ["#3366cc", "#dc3912", "#ff9900", "#109618", "#990099", "#0099c6",
                "#dd4477", "#66aa00", "#b82e2e", "#316395", "#994499", "#22aa99"];
const $ = (id) => document.getElementById(id);
let colorOf = {};
let ring = [];
let key = "";

function el(tag, attrs, text) {
  const node = document.createElementNS(
    tag === "path" || tag === "circle" || tag === "text" ? "http://www.w3.org/2000/svg" : "http://www.w3.org/1999/xhtml", tag);
  for (const [k, v] of Object.entries(attrs || {})) node.setAttribute(k, v);
  if (text !== undefined) node.textContent = text;
  return node;
}

function bytes(n) {
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let i = 0;
  while (n >= 1024 && i < units.length - 1) { n /= 1024; i++; }
  return (i === 0 ? n : n.toFixed(1)) + " " + units[i];
}

function ago(unix) {
  if (!unix) return "never";
  const s = Math.max(0, Math.floor(Date.now() / 1000 - unix));
  if (s < 60) return s + "s ago";
  if (s < 3600) return Math.floor(s / 60) + "m ago";
  if (s < 86400) return Math.floor(s / 3600) + "h ago";
  return Math.floor(s / 86400) + "d ago";
}

async function getJson(path) {
  const response = await fetch(path, { cache: "no-store" });
  if (!response.ok) throw new Error(path + ": HTTP " + response.status + " " + (await response.text()).trim());
  return response.json();
}

function banner(text) {
  const b = $("banner");
  b.hidden = !text;
  b.textContent = text || "";
}

// A clock offset from the serving node, in ms: "+0.3 ms", "-30.0 s", "?".
function clockOffset(ms) {
  if (ms === null || ms === undefined) return "?";
  if (ms === 0) return "0";
  const sign = ms > 0 ? "+" : "-";
  return Math.abs(ms) >= 1000 ? sign + (Math.abs(ms) / 1000).toFixed(1) + " s"
                              : sign + Math.abs(ms).toFixed(1) + " ms";
}

function drawNodes(cluster) {
  const body = $("nodes").tBodies[0];
  body.replaceChildren();
  for (const n of cluster.nodes) {
    const row = el("tr", { "data-node": n.name, "data-status": n.up ? "UP" : "DOWN" });
    const cells = [n.up ? "UP" : "DOWN", n.state, n.name, n.address, n.rack, bytes(n.load_bytes),
                   (n.owns * 100).toFixed(1) + "%", n.tokens, ago(n.last_repair),
                   clockOffset(n.clock_offset_ms), n.version];
    cells.forEach((text, i) => {
      const cell = el("td", i === 0 ? { class: n.up ? "up" : "down" } : {}, String(text));
      if (i === 2) cell.style.borderLeft = "4px solid " + colorOf[n.name];
      row.appendChild(cell);
    });
    body.appendChild(row);
  }
}

// A point on the ring at fraction f (0 at the top, clockwise).
function point(f, r) {
  const a = 2 * Math.PI * f - Math.PI / 2;
  return [r * Math.cos(a), r * Math.sin(a)];
}

function arcPath(from, to, r) {
  let span = to - from;
  if (span <= 0) span += 1;
  const [x1, y1] = point(from, r);
  const [x2, y2] = point(from + span, r);
  return `M ${x1.toFixed(2)} ${y1.toFixed(2)} A ${r} ${r} 0 ${span > 0.5 ? 1 : 0} 1 ${x2.toFixed(2)} ${y2.toFixed(2)}`;
}

function drawRing(cluster, replicas) {
  const svg = $("ring");
  svg.replaceChildren();
  ring = cluster.ring;
  ring.forEach((range, i) => {
    const classes = ["arc"];
    if (replicas) classes.push(i === replicas.range ? "replica" : "dimmed");
    svg.appendChild(el("path", {
      d: arcPath(range.from, range.to, 130), stroke: colorOf[range.owner] || "#999",
      class: classes.join(" "), "data-owner": range.owner, "data-range": i,
    }));
  });
  if (replicas) {
    const [x, y] = point(replicas.at, 130);
    svg.appendChild(el("circle", { cx: x, cy: y, r: 7, fill: "#1d2330", class: "key-marker" }));
  }
  svg.appendChild(el("text", { x: 0, y: 5, "text-anchor": "middle", "font-size": 14 },
                     ring.length + " token ranges"));
  const legend = $("ring-legend");
  legend.replaceChildren();
  for (const n of cluster.nodes) {
    const item = el("div", { "data-node": n.name });
    const swatch = el("i");
    swatch.style.background = colorOf[n.name];
    item.append(swatch, n.name + " (" + n.tokens + " tokens)");
    if (replicas && replicas.replicas.includes(n.name)) item.style.fontWeight = "700";
    legend.appendChild(item);
  }
}

function drawWork(cluster) {
  const list = $("work");
  list.replaceChildren();
  const items = cluster.work.length ? cluster.work : ["nothing running"];
  for (const text of items) list.appendChild(el("li", {}, text));
}

let replicas = null;

async function refreshCluster() {
  const cluster = await getJson("/console/api/cluster");
  cluster.nodes.forEach((n, i) => { colorOf[n.name] = COLORS[i % COLORS.length]; });
  $("cluster-name").textContent = "cluster " + cluster.cluster_name + ", RF " + cluster.replication_factor;
  $("served-by").textContent = "served by " + cluster.local;
  drawNodes(cluster);
  drawRing(cluster, replicas);
  drawWork(cluster);
  const select = $("chart-node");
  for (const n of cluster.nodes) {
    if (![...select.options].some((o) => o.value === n.name)) select.appendChild(el("option", { value: n.name }, n.name));
  }
  return cluster;
}

async function refreshCharts() {
  const node = $("chart-node").value;
  const answer = await getJson("/console/api/charts?node=" + encodeURIComponent(node));
  const box = $("charts");
  for (const chart of answer.charts) {
    let figure = box.querySelector(`figure[data-chart="${chart.id}"]`);
    if (!figure) {
      figure = el("figure", { "data-chart": chart.id });
      box.appendChild(figure);
    }
    figure.setAttribute("data-points", chart.points);
    figure.setAttribute("data-nonzero", chart.nonzero);
    figure.innerHTML = chart.svg;
  }
  return answer;
}

async function refresh() {
  try {
    const cluster = await refreshCluster();
    const charts = await refreshCharts();
    const silent = charts.silent || [];
    if (cluster.down.length) {
      banner(cluster.local + " has lost contact with " + cluster.down.join(", ") +
             ": they are DOWN for its failure detector");
    } else if (silent.length) {
      banner(cluster.local + " could not fetch samples from " + silent.join(", "));
    } else {
      banner("");
    }
    $("updated").textContent = "updated " + new Date().toLocaleTimeString();
    document.body.setAttribute("data-ready", "1");
  } catch (error) {
    banner("Lost contact with the node serving this console: " + error.message);
  }
}

async function showKey(value) {
  key = value;
  if (!key) {
    replicas = null;
    $("key-replicas").textContent = "";
  } else {
    try {
      replicas = await getJson("/console/api/replicas?key=" + encodeURIComponent(key));
      $("key-replicas").textContent = "replicas of " + JSON.stringify(key) + ": " +
        replicas.replicas.join(", ") + " (token " + replicas.token + ")";
    } catch (error) {
      replicas = null;
      $("key-replicas").textContent = error.message;
    }
  }
}

$("key-form").addEventListener("submit", (e) => e.preventDefault());
$("key").addEventListener("input", async (e) => {
  await showKey(e.target.value);
  refresh();
});
$("chart-node").addEventListener("change", refresh);

// `/?key=K` opens the console with K's replicas shown.
const start = new URLSearchParams(location.search).get("key");
if (start) {
  $("key").value = start;
  showKey(start).then(refresh);
} else {
  refresh();
}
setInterval(refresh, REFRESH_MS);
