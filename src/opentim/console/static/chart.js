// A small line chart on a <canvas>: time on x, one or two y scales. No library.

const COLORS = { connections: "#2563eb", online: "#16a34a", messages: "#ea580c" };

export function drawChart(canvas, samples, series) {
  // samples: [[second, connections, online, messages], …]; series: [{key, index, label, axis}]
  const ratio = window.devicePixelRatio || 1;
  const width = canvas.clientWidth || 600;
  const height = canvas.clientHeight || 240;
  if (canvas.width !== Math.round(width * ratio) || canvas.height !== Math.round(height * ratio)) {
    canvas.width = Math.round(width * ratio);
    canvas.height = Math.round(height * ratio);
  }
  const ctx = canvas.getContext("2d");
  ctx.setTransform(ratio, 0, 0, ratio, 0, 0);
  ctx.clearRect(0, 0, width, height);
  const style = getComputedStyle(canvas);
  const ink = style.color || "#222";
  const pad = { left: 48, right: 48, top: 12, bottom: 24 };
  const w = Math.max(10, width - pad.left - pad.right);
  const hgt = Math.max(10, height - pad.top - pad.bottom);
  const now = samples.length ? samples[samples.length - 1][0] : Math.floor(Date.now() / 1000);
  const span = 120;
  const x = (second) => pad.left + w * (1 - (now - second) / span);
  const maxOf = (axis) => {
    let max = 0;
    for (const s of series) {
      if (s.axis !== axis) continue;
      for (const sample of samples) max = Math.max(max, sample[s.index]);
    }
    return niceCeil(max);
  };
  const left = maxOf("left");
  const right = maxOf("right");
  ctx.font = "11px system-ui, sans-serif";
  ctx.lineWidth = 1;
  ctx.strokeStyle = "rgba(127,127,127,0.25)";
  ctx.fillStyle = ink;
  for (let i = 0; i <= 4; i++) {
    const y = pad.top + hgt * (i / 4);
    ctx.beginPath();
    ctx.moveTo(pad.left, y);
    ctx.lineTo(pad.left + w, y);
    ctx.stroke();
    ctx.textAlign = "right";
    ctx.fillText(String(Math.round(left * (1 - i / 4))), pad.left - 6, y + 4);
    ctx.textAlign = "left";
    ctx.fillText(String(Math.round(right * (1 - i / 4))), pad.left + w + 6, y + 4);
  }
  ctx.textAlign = "center";
  for (let ago = 0; ago <= span; ago += 30) {
    ctx.fillText(ago ? `-${ago}s` : "now", x(now - ago), height - 6);
  }
  for (const s of series) {
    const max = s.axis === "left" ? left : right;
    ctx.strokeStyle = COLORS[s.key] || ink;
    ctx.lineWidth = 2;
    ctx.beginPath();
    let started = false;
    for (const sample of samples) {
      if (now - sample[0] > span) continue;
      const px = x(sample[0]);
      const py = pad.top + hgt * (1 - (max ? sample[s.index] / max : 0));
      if (started) ctx.lineTo(px, py);
      else {
        ctx.moveTo(px, py);
        started = true;
      }
    }
    ctx.stroke();
  }
}

export function chartColor(key) {
  return COLORS[key];
}

function niceCeil(value) {
  if (value <= 4) return 4;
  const magnitude = 10 ** Math.floor(Math.log10(value));
  for (const step of [1, 2, 2.5, 5, 10]) {
    if (step * magnitude >= value) return step * magnitude;
  }
  return 10 * magnitude;
}
