"""The batched Snake move as one compiled loop over games, for the CPU.

On a CPU, `BatchedSnake` as tensor operations spends most of a move in the fixed cost of
some fifty small PyTorch calls; a loop compiled by numba does a game's move in a few
dozen machine instructions, writing into the same tensors (as NumPy views) in place.
It follows `BatchedSnake._move` and `_place_fruit` exactly, except that the uniform
draws for new fruits come in as an argument (one per game, from the env's torch
generator), and the step-for-step test with `SnakeEnv` runs on both.
"""

import numba


@numba.njit(cache=True, nogil=True)
def move(board, body, head, head_ptr, tail_ptr, heading, length, steps, eaten, actions,
         move_table, turn_table, uniform, rewards, max_steps,
         reward_out, dead_out, truncated_out):
    """Every game's move and new fruit; `max_steps` < 0 means no step limit. Returns -1,
    or the first game whose action is not 0, 1 or 2, before any game has moved (the
    table lookups below do not check their indices)."""
    num_games = board.shape[0]
    for i in range(num_games):
        if actions[i] < 0 or actions[i] > 2:
            return i
    spare = board.shape[1] - 1  # the flat board holds two columns per square
    squares = spare // 2
    reward_fruit, reward_step, reward_death = rewards[0], rewards[1], rewards[2]
    for i in range(num_games):
        step = head[i] * 12 + heading[i] * 3 + actions[i]
        cell = move_table[step]
        steps[i] += 1
        truncated_out[i] = False
        if cell < 0 or board[i, 2 * cell] > 0:  # off the board, or any body square
            dead_out[i] = True
            reward_out[i] = reward_death
            continue
        dead_out[i] = False
        ate = board[i, 2 * cell + 1] > 0
        board[i, 2 * head[i]] = 1  # the old head becomes body
        if not ate:  # the tail moves up
            board[i, 2 * body[i, tail_ptr[i]]] = 0
            tail_ptr[i] = (tail_ptr[i] + 1) % squares
        board[i, 2 * cell] = 2
        head_ptr[i] = (head_ptr[i] + 1) % squares
        body[i, head_ptr[i]] = cell
        head[i] = cell
        heading[i] = turn_table[step % 12]
        if ate:
            board[i, 2 * cell + 1] = 0
            length[i] += 1
            eaten[i] += 1
            reward_out[i] = reward_fruit
            place_fruit(board[i], uniform[i], squares)
        else:
            reward_out[i] = reward_step
        truncated_out[i] = max_steps >= 0 and steps[i] >= max_steps
    return -1


@numba.njit(cache=True, nogil=True)
def place_fruit(board_row, u, squares):
    """A fruit on the r-th empty square, r uniform below the empty count (none if full)."""
    empty = 0
    for s in range(squares):
        if board_row[2 * s] == 0 and board_row[2 * s + 1] == 0:
            empty += 1
    if empty == 0:
        return
    r = min(int(u * empty), empty - 1)
    for s in range(squares):
        if board_row[2 * s] == 0 and board_row[2 * s + 1] == 0:
            if r == 0:
                board_row[2 * s + 1] = 1
                return
            r -= 1


@numba.njit(cache=True, nogil=True)
def viewed_boards(board, head, heading, view_rows, view_cols, width, centred, out):
    """out[i, j] = the body and fruit values of the board square that viewed square j of
    game i shows (`view_offsets`, relative to the head when `centred`); 3 and 0 where it
    shows no board square."""
    height = (board.shape[1] - 1) // 2 // width
    for i in range(board.shape[0]):
        rows, cols = view_rows[heading[i]], view_cols[heading[i]]
        head_row, head_col = (head[i] // width, head[i] % width) if centred else (0, 0)
        for j in range(out.shape[1]):
            y, x = rows[j] + head_row, cols[j] + head_col
            if 0 <= y < height and 0 <= x < width:
                out[i, j, 0] = board[i, 2 * (y * width + x)]
                out[i, j, 1] = board[i, 2 * (y * width + x) + 1]
            else:
                out[i, j, 0] = 3
                out[i, j, 1] = 0


@numba.njit(cache=True, nogil=True)
def start(board, body, head, head_ptr, tail_ptr, heading, length, steps, eaten, done,
          uniform, width, init_len, num_fruits):
    """New games where `done`, as `BatchedSnake._start`: a straight snake heading right
    (heading 0) at a uniform row and a uniform column in [init_len - 1, width), then the
    fruits. The k-th new game uses uniform row k: row, column, then one per fruit."""
    squares = (board.shape[1] - 1) // 2
    height = squares // width
    k = 0
    for i in range(board.shape[0]):
        if not done[i]:
            continue
        u = uniform[k]
        k += 1
        board[i, :] = 0
        y = min(int(u[0] * height), height - 1)
        x = init_len - 1 + min(int(u[1] * (width - init_len + 1)), width - init_len)
        for j in range(init_len):  # tail first
            cell = y * width + x - (init_len - 1 - j)
            body[i, j] = cell
            board[i, 2 * cell] = 1
        head[i] = y * width + x
        board[i, 2 * head[i]] = 2
        for f in range(num_fruits):
            place_fruit(board[i], u[2 + f], squares)
        tail_ptr[i] = 0
        head_ptr[i] = init_len - 1
        heading[i] = 0
        length[i] = init_len
        steps[i] = 0
        eaten[i] = 0
