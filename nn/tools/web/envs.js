// rlgen's two games in JavaScript, ported from envs/cartpole.py and envs/snake.py so
// that a page plays the game its network was trained on: same constants from the
// export's manifest, same order of arithmetic, same observation encoding.
// tests/test_browser.py steps both ports beside the Python envs and holds them equal.

// ------------------------------------------------------------------ cart-pole

export class CartPole {
  constructor(env) {
    this.gravity = env.gravity;
    this.cartMass = env.cart_mass;
    this.poleMass = env.pole_mass;
    this.halfLength = env.pole_half_length;
    this.forceMag = env.force_mag;
    this.tau = env.tau;
    this.xThreshold = env.x_threshold;
    this.thetaThreshold = env.theta_threshold_degrees * (Math.PI / 180); // as math.radians
    this.totalMass = this.cartMass + this.poleMass;
    this.poleMoment = this.poleMass * this.halfLength;
    this.startHigh = [env.start_x, env.start_x_dot,
      env.start_theta_degrees * (Math.PI / 180), env.start_theta_dot];
    this.maxSteps = env.max_steps_per_game ?? null;
    this.actionNames = ["push left", "push right"];
    this.reset();
  }

  // a fresh game: each state variable uniform in its start range, or `state` as given
  reset(state = null, random = Math.random) {
    this.state = state ? [...state] : this.startHigh.map((h) => (2 * random() - 1) * h);
    this.steps = 0;
    this.done = false;
    return this.observation();
  }

  // one Euler step (action 1 pushes right); reward 1 unless the step ends the game
  step(action) {
    let [x, xDot, theta, thetaDot] = this.state;
    const force = this.forceMag * (2 * action - 1);
    const cos = Math.cos(theta), sin = Math.sin(theta);
    const temp = (force + this.poleMoment * thetaDot * thetaDot * sin) / this.totalMass;
    const thetaAcc = (this.gravity * sin - cos * temp) /
      (this.halfLength * (4.0 / 3.0 - this.poleMass * cos * cos / this.totalMass));
    const xAcc = temp - this.poleMoment * thetaAcc * cos / this.totalMass;
    x = x + this.tau * xDot;
    xDot = xDot + this.tau * xAcc;
    theta = theta + this.tau * thetaDot;
    thetaDot = thetaDot + this.tau * thetaAcc;
    this.state = [x, xDot, theta, thetaDot];
    this.steps += 1;
    const terminated = Math.abs(x) > this.xThreshold || Math.abs(theta) > this.thetaThreshold;
    const truncated = !terminated && this.maxSteps !== null && this.steps >= this.maxSteps;
    this.done = terminated || truncated;
    return { reward: terminated ? 0.0 : 1.0, terminated, truncated };
  }

  observation() {
    return Float32Array.from(this.state);
  }
}

// ------------------------------------------------------------------ Snake

const DY = [0, -1, 0, 1], DX = [1, 0, -1, 0]; // headings right, up, left, down
const UP = 1;
const TURN = [0, 1, 3]; // action -> change of heading: straight, left, right
const OFF_BOARD = 3;

// numpy's rot90 (counter-clockwise, axes 0 and 1) of a grid of [row, col] pairs
function rot90(grid) {
  const rows = grid.length, cols = grid[0].length;
  return Array.from({ length: cols }, (_, i) =>
    Array.from({ length: rows }, (_, j) => grid[j][cols - 1 - i]));
}

// for each heading, each canvas square's board coordinates (envs/snake_rules.py)
function viewOffsets(height, width, view) {
  const side = view === "turned" ? Math.max(height, width) : 2 * Math.max(height, width) - 1;
  const half = Math.floor(side / 2);
  const [rows, cols, shift] = view === "turned" ? [height, width, 0] : [side, side, half];
  const base = Array.from({ length: rows }, (_, r) =>
    Array.from({ length: cols }, (_, c) => [r - shift, c - shift]));
  return [0, 1, 2, 3].map((heading) => {
    let grid = base;
    for (let k = 0; k < (UP - heading + 4) % 4; k++) grid = rot90(grid);
    return Array.from({ length: side }, (_, i) => Array.from({ length: side }, (_, j) =>
      i < grid.length && j < grid[0].length ? grid[i][j] : [-side, -side]));
  });
}

export class Snake {
  constructor(env) {
    this.height = env.height;
    this.width = env.width;
    this.numFruits = env.num_fruits;
    this.initLen = env.init_len;
    this.maxSteps = env.max_steps_per_game ?? null;
    this.rewards = [env.reward_fruit, env.reward_step, env.reward_death];
    this.view = env.view ?? "board";
    this.offsets = this.view === "board" ? null : viewOffsets(this.height, this.width, this.view);
    this.side = this.offsets ? this.offsets[0].length : null;
    this.actionNames = ["straight", "left", "right"];
    this.fruitQueue = []; // squares the next fruits go to (tests inject Python's choices)
    this.reset();
  }

  // a fresh game as Python's reset draws it, or a given position
  reset(position = null, random = Math.random) {
    this.random = random;
    if (position) {
      this.snake = position.snake.map(([y, x]) => [y, x]);
      this.fruits = position.fruits.map(([y, x]) => [y, x]);
      this.heading = position.heading ?? 0;
    } else {
      const y = Math.floor(random() * this.height);
      const x = this.initLen - 1 + Math.floor(random() * (this.width - this.initLen + 1));
      this.snake = Array.from({ length: this.initLen }, (_, i) => [y, x - i]);
      this.heading = 0;
      this.fruits = [];
      for (let i = 0; i < this.numFruits; i++) this.placeFruit();
    }
    this.steps = this.eaten = 0;
    this.done = false;
    return this.observation();
  }

  has(list, y, x) {
    return list.some(([a, b]) => a === y && b === x);
  }

  placeFruit() {
    const empty = [];
    for (let y = 0; y < this.height; y++) {
      for (let x = 0; x < this.width; x++) {
        if (!this.has(this.snake, y, x) && !this.has(this.fruits, y, x)) empty.push([y, x]);
      }
    }
    if (!empty.length) return; // a full board gets no new fruit
    const square = this.fruitQueue.length ? this.fruitQueue.shift()
      : empty[Math.floor(this.random() * empty.length)];
    this.fruits.push(square);
  }

  // where the head goes for an action; leaving the board or landing on the body
  // (the tail included: it has not moved yet) ends the game
  step(action) {
    const [fruitReward, stepReward, deathReward] = this.rewards;
    const heading = (this.heading + TURN[action]) % 4;
    const [hy, hx] = this.snake[0];
    const y = hy + DY[heading], x = hx + DX[heading];
    this.steps += 1;
    if (y < 0 || y >= this.height || x < 0 || x >= this.width || this.has(this.snake, y, x)) {
      this.done = true;
      return { reward: deathReward, terminated: true, truncated: false };
    }
    this.heading = heading;
    this.snake.unshift([y, x]);
    let reward = stepReward;
    const eaten = this.fruits.findIndex(([a, b]) => a === y && b === x);
    if (eaten >= 0) {
      this.fruits.splice(eaten, 1);
      this.eaten += 1;
      this.placeFruit();
      reward = fruitReward;
    } else {
      this.snake.pop();
    }
    const truncated = this.maxSteps !== null && this.steps >= this.maxSteps;
    this.done = truncated;
    return { reward, terminated: false, truncated };
  }

  // the turn (0 straight, 1 left, 2 right) towards an arrow's direction; reversing: straight
  turnTowards(direction) {
    const wanted = { right: 0, up: 1, left: 2, down: 3 }[direction];
    return { 0: 0, 1: 1, 3: 2 }[(wanted - this.heading + 4) % 4] ?? 0;
  }

  // the observation the Q-network reads: [H, W, 2] uint8 (or its turned or centred view),
  // channel 0 is 2 at the head and 1 on the body, channel 1 is 1 on fruit
  observation() {
    const board = new Uint8Array(this.height * this.width * 2);
    for (const [y, x] of this.snake) board[(y * this.width + x) * 2] = 1;
    board[(this.snake[0][0] * this.width + this.snake[0][1]) * 2] = 2;
    for (const [y, x] of this.fruits) board[(y * this.width + x) * 2 + 1] = 1;
    if (!this.offsets) return board;
    const offsets = this.offsets[this.heading];
    const [ay, ax] = this.view === "centred" ? this.snake[0] : [0, 0];
    const seen = new Uint8Array(this.side * this.side * 2);
    for (let i = 0; i < this.side; i++) {
      for (let j = 0; j < this.side; j++) {
        const y = ay + offsets[i][j][0], x = ax + offsets[i][j][1];
        const at = (i * this.side + j) * 2;
        if (y >= 0 && y < this.height && x >= 0 && x < this.width) {
          seen[at] = board[(y * this.width + x) * 2];
          seen[at + 1] = board[(y * this.width + x) * 2 + 1];
        } else {
          seen[at] = OFF_BOARD;
        }
      }
    }
    return seen;
  }

  observationShape() {
    return this.offsets ? [this.side, this.side, 2] : [this.height, this.width, 2];
  }
}
