// A job's tasks as a grid of cells coloured by state, drawn on one <canvas>:
// one byte of state per task, so 100,000 tasks are 100 kB and a redraw is a
// pass of fillRect calls grouped by colour (no DOM node per task).

export const TASK_STATES = ["unknown", "waiting", "queued", "running", "succeeded", "failed", "dead", "cancelled"];
const CODE = Object.fromEntries(TASK_STATES.map((s, i) => ["TASK_" + s.toUpperCase(), i]));

const LETTER_CODE = { w: 1, q: 2, r: 3, s: 4, f: 5, d: 6, c: 7 };

export function taskCode(state) {
  return CODE[state] || 0;
}

export class TaskGrid {
  constructor(canvas, count, onPick) {
    this.canvas = canvas;
    this.count = count;
    this.states = new Uint8Array(count);
    this.selected = -1;
    this.pending = false;
    const style = getComputedStyle(document.documentElement);
    this.colours = TASK_STATES.map((s) => style.getPropertyValue("--" + s).trim() || "#eee");
    this.colours[0] = "#eceef1";
    this.layout();
    canvas.addEventListener("click", (e) => {
      const i = this.indexAt(e.offsetX, e.offsetY);
      if (i >= 0) {
        this.selected = i;
        this.draw();
        onPick(i);
      }
    });
    canvas.addEventListener("mousemove", (e) => {
      const i = this.indexAt(e.offsetX, e.offsetY);
      canvas.title = i >= 0 ? `task ${i}: ${TASK_STATES[this.states[i]]}` : "";
    });
  }

  // Cells as large as fit the width at a sensible height: 16 px for a few
  // tasks, down to 2 px for 100,000.
  layout() {
    const width = Math.max(200, (this.canvas.parentElement?.clientWidth || 1000) - 14);
    let cell = 16;
    while (cell > 2 && Math.ceil(this.count / Math.floor(width / cell)) * cell > 900) cell--;
    this.cell = cell;
    this.gap = cell >= 6 ? 1 : 0;
    this.cols = Math.max(1, Math.floor(width / cell));
    this.rows = Math.max(1, Math.ceil(this.count / this.cols));
    this.canvas.width = this.cols * cell;
    this.canvas.height = this.rows * cell;
    this.canvas.style.width = this.canvas.width + "px";
    this.canvas.style.height = this.canvas.height + "px";
  }

  indexAt(x, y) {
    const col = Math.floor(x / this.cell);
    const row = Math.floor(y / this.cell);
    if (col < 0 || col >= this.cols || row < 0) return -1;
    const i = row * this.cols + col;
    return i < this.count ? i : -1;
  }

  // tasks: TaskInfo objects from the API (index, state).
  // States as GET /api/v1/jobs/ID/states gives them: a letter a task from `offset`.
  setLetters(offset, letters) {
    const end = Math.min(this.count, offset + letters.length);
    for (let i = offset; i < end; i++) this.states[i] = LETTER_CODE[letters[i - offset]] || 0;
    this.schedule();
  }

  set(tasks) {
    for (const t of tasks) {
      const i = Number(t.index || 0);
      if (i < this.count) this.states[i] = taskCode(t.state);
    }
    this.schedule();
  }

  schedule() {
    if (this.pending) return;
    this.pending = true;
    requestAnimationFrame(() => {
      this.pending = false;
      this.draw();
    });
  }

  // Into one ImageData: a cell is a few pixel writes, not a canvas call, so
  // 100,000 cells draw in milliseconds even without a GPU.
  draw() {
    const ctx = this.canvas.getContext("2d");
    const { cell, gap, cols, states, count } = this;
    const width = this.canvas.width;
    const image = ctx.createImageData(width, this.canvas.height);
    const pixels = new Uint32Array(image.data.buffer);
    const rgba = this.colours.map(packColour);
    const size = cell - gap;
    for (let i = 0; i < count; i++) {
      const colour = rgba[states[i]];
      const x0 = (i % cols) * cell;
      let p = Math.floor(i / cols) * cell * width + x0;
      for (let y = 0; y < size; y++, p += width) pixels.fill(colour, p, p + size);
    }
    ctx.putImageData(image, 0, 0);
    if (this.selected >= 0) {
      ctx.strokeStyle = "#000";
      ctx.lineWidth = Math.max(1, cell / 6);
      const i = this.selected;
      ctx.strokeRect((i % cols) * cell, Math.floor(i / cols) * cell, size, size);
    }
  }

  countsByState() {
    const out = new Array(TASK_STATES.length).fill(0);
    for (let i = 0; i < this.count; i++) out[this.states[i]]++;
    return out;
  }
}

// "#rrggbb" -> one little-endian RGBA pixel of a Uint32Array over ImageData.
function packColour(css) {
  const m = /^#([0-9a-f]{2})([0-9a-f]{2})([0-9a-f]{2})$/i.exec(css);
  const [r, g, b] = m ? [1, 2, 3].map((k) => parseInt(m[k], 16)) : [200, 200, 200];
  return ((255 << 24) | (b << 16) | (g << 8) | r) >>> 0;
}
