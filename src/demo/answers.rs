//! The scripted upstream's answers: realistic markdown chosen by keywords in the last user message.
//!
//! Each [`Canned`] answer carries an example prompt (the playground offers them as suggestions and
//! the tests send them) and the keywords that select it. [`answer_for`] tries the answers in table
//! order, so the more specific ones (Plotly before matplotlib, which both match "plot") come first;
//! a prompt that matches nothing gets [`DEFAULT`], which lists what to ask.
//!
//! With the `python` tool offered, the script also takes part in the agentic loop: a prompt about
//! Fibonacci numbers is answered with a call of `python` ([`python_call_for`]), and a request whose
//! last message is the tool's result is answered with what the code printed
//! ([`answer_to_tool_result`]).

/// One scripted answer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Canned {
    /// A short name, used by tests and in the playground's suggestions.
    pub name: &'static str,
    /// A prompt that selects this answer.
    pub prompt: &'static str,
    /// Lower-case words or phrases; any one of them in the prompt selects the answer.
    pub keywords: &'static [&'static str],
    /// The answer, in markdown.
    pub markdown: &'static str,
    /// How many Python blocks the answer holds.
    pub python_blocks: usize,
}

/// The answers, in the order [`answer_for`] tries them.
pub const ANSWERS: &[Canned] = &[
    Canned {
        name: "error",
        prompt: "Show me a script that raises an error",
        keywords: &["error", "raise", "exception", "traceback", "crash", "bug"],
        markdown: ERROR,
        python_blocks: 1,
    },
    Canned {
        name: "plotly",
        prompt: "Make the Plotly bar chart from NVIDIA's sandboxing post",
        keywords: &["plotly", "bar chart", "nvidia", "webassembly"],
        markdown: PLOTLY,
        python_blocks: 1,
    },
    Canned {
        name: "matplotlib",
        prompt: "Plot a sine and a cosine with matplotlib",
        keywords: &["matplotlib", "plot", "sine", "graph", "chart", "figure"],
        markdown: MATPLOTLIB,
        python_blocks: 1,
    },
    Canned {
        name: "pandas",
        prompt: "Summarise some sales in a pandas table",
        keywords: &["pandas", "table", "dataframe", "csv", "sales"],
        markdown: PANDAS,
        python_blocks: 1,
    },
    Canned {
        name: "fibonacci",
        prompt: "What is the 20th Fibonacci number?",
        keywords: &["fibonacci"],
        markdown: FIBONACCI,
        python_blocks: 1,
    },
    Canned {
        name: "steps",
        prompt: "Walk me through primes step by step",
        keywords: &["step", "several", "prime", "list"],
        markdown: STEPS,
        python_blocks: 3,
    },
    Canned {
        name: "no-python",
        prompt: "Explain how sandgate keeps my machine safe",
        keywords: &["explain", "what is", "how does", "why", "safe", "sandgate", "no code"],
        markdown: NO_PYTHON,
        python_blocks: 0,
    },
];

/// The code the scripted model runs with the `python` tool: it prints the 20th Fibonacci number,
/// 6765 (counting F(1) = F(2) = 1).
pub const FIBONACCI_CODE: &str =
    "a, b = 0, 1\nfor _ in range(20):\n    a, b = b, a + b\nprint(a)\n";

/// What the scripted model answers, with the `python` tool offered, by calling it: the code for a
/// prompt about Fibonacci numbers (case-insensitive), `None` for any other prompt (answered as
/// without the tool).
pub fn python_call_for(prompt: &str) -> Option<&'static str> {
    prompt.to_lowercase().contains("fibonacci").then_some(FIBONACCI_CODE)
}

/// The answer to a request whose last message is a tool result: "The code printed: " and the first
/// line of the result that is not blank (the whole result is the text the client sent back).
pub fn answer_to_tool_result(result: &str) -> String {
    let first = result.lines().map(str::trim_end).find(|l| !l.trim().is_empty()).unwrap_or("");
    format!("The code printed: {first}")
}

/// The answer to a prompt that matches no keyword.
pub const DEFAULT: &str = r#"Hello! I am **sandgate's demo model**: a script, not an LLM, so nothing you type leaves this machine. Each of my answers streams through sandgate, which adds a **▶ Run in sandbox** link under every Python block. The code then runs with Pyodide in *your* browser, not on a server.

Ask me for one of these:

- **"Make the Plotly bar chart from NVIDIA's sandboxing post"**: a figure that is built but never shown;
- **"Plot a sine and a cosine with matplotlib"**: a figure captured as an image;
- **"Summarise some sales in a pandas table"**: a DataFrame shown as a table;
- **"Show me a script that raises an error"**: a traceback with your own line numbers;
- **"Walk me through primes step by step"**: several blocks in a numbered list;
- **"What is the 20th Fibonacci number?"**: with the `python` tool offered (`x-sandgate-tools: python`), I call it and answer with what the code printed;
- **"Explain how sandgate keeps my machine safe"**: an answer without Python, left as it is.

Point any OpenAI client at this server's `/v1` and you get the same answers, rewritten the same way.
"#;

/// Picks the answer for a prompt: the first answer of [`ANSWERS`] with a keyword in the prompt
/// (case-insensitive), else [`DEFAULT`].
pub fn answer_for(prompt: &str) -> &'static str {
    canned_for(prompt).map_or(DEFAULT, |c| c.markdown)
}

/// The canned answer a prompt selects, if any.
pub fn canned_for(prompt: &str) -> Option<&'static Canned> {
    let prompt = prompt.to_lowercase();
    ANSWERS.iter().find(|c| c.keywords.iter().any(|k| prompt.contains(k)))
}

const PLOTLY: &str = r#"Here is the bar chart from NVIDIA's post *Sandboxing Agentic AI Workflows with WebAssembly*: three categories, **A**, **B** and **C**, with the values 10, 20 and 15.

```python
import pandas as pd
import plotly.express as px

data = {"Category": ["A", "B", "C"], "Values": [10, 20, 15]}
df = pd.DataFrame(data)

fig = px.bar(df, x="Category", y="Values", title="Sample Bar Chart")
```

A few notes:

- The code builds `fig` and never calls `fig.show()`, just as an agent's code often does. The sandbox finds the figure left behind and draws it with plotly.js.
- Nothing runs on a server: Pyodide executes the code inside your browser, in a page that holds no secrets.
- Change the values and press **Run again** to redraw the chart.
"#;

const MATPLOTLIB: &str = r#"Sure, here are a sine and a cosine over one period, on the same axes:

```python
import numpy as np
import matplotlib.pyplot as plt

x = np.linspace(0, 2 * np.pi, 200)

fig, ax = plt.subplots(figsize=(6, 3.5))
ax.plot(x, np.sin(x), label="sin(x)")
ax.plot(x, np.cos(x), label="cos(x)", linestyle="--")
ax.set_xlabel("x (radians)")
ax.set_ylabel("value")
ax.set_title("Sine and cosine")
ax.axhline(0, color="grey", linewidth=0.5)
ax.legend()
plt.show()
```

`plt.show()` cannot open a window in the browser, so the sandbox captures the figure as a PNG instead. The curves cross at x = π/4 and x = 5π/4, where sin(x) = cos(x) = ±√2/2.
"#;

const PANDAS: &str = r#"Here is a small sales table, with the total and average per region:

```python
import pandas as pd

sales = pd.DataFrame(
    {
        "region": ["North", "South", "North", "East", "South", "East", "North"],
        "product": ["tea", "tea", "coffee", "coffee", "cocoa", "tea", "cocoa"],
        "units": [120, 80, 95, 60, 40, 75, 30],
        "price": [2.5, 2.5, 3.0, 3.0, 2.0, 2.5, 2.0],
    }
)
sales["revenue"] = sales["units"] * sales["price"]

summary = (
    sales.groupby("region")
    .agg(orders=("product", "count"), units=("units", "sum"), revenue=("revenue", "sum"))
    .sort_values("revenue", ascending=False)
)
summary["avg_order"] = (summary["revenue"] / summary["orders"]).round(2)
summary
```

The last expression, `summary`, is shown as a table. With these numbers:

| region | orders | revenue |
|--------|-------:|--------:|
| North  | 3      | 645.0   |
| East   | 2      | 367.5   |
| South  | 2      | 280.0   |

North sells the most, mostly tea.
"#;

const ERROR: &str = r#"Here is a script with a classic bug: it averages the scores of every team, and one team has none yet.

```python
def average(scores):
    return sum(scores) / len(scores)

teams = {
    "red": [12, 15, 9],
    "blue": [7, 11],
    "green": [],
}

for team, scores in teams.items():
    print(f"{team}: {average(scores):.1f}")
```

Running it prints the first two averages, then stops with a `ZeroDivisionError`, because `len([])` is 0. The traceback points at line 2 of the code above.

**How to fix it:** decide what an empty list means, for instance:

```text
return sum(scores) / len(scores) if scores else float("nan")
```
"#;

const FIBONACCI: &str = r#"The Fibonacci numbers start with 1, 1, and each next one is the sum of the two before it. This loop walks twenty steps:

```python
a, b = 0, 1
for _ in range(20):
    a, b = b, a + b
print(a)
```

It prints **6765**, the 20th Fibonacci number. Run it in the sandbox and change `20` to try others.
"#;

const STEPS: &str = r#"Let's find the prime numbers below 50 in three steps.

1. **Test one number.** A number n > 1 is prime when no d with d² ≤ n divides it:

   ```python
   def is_prime(n):
       if n < 2:
           return False
       d = 2
       while d * d <= n:
           if n % d == 0:
               return False
           d += 1
       return True

   print([n for n in range(20) if is_prime(n)])
   ```

2. **Sieve them all at once.** The sieve of Eratosthenes crosses out the multiples of each prime:

   ```python
   limit = 50
   candidate = [True] * limit
   candidate[0] = candidate[1] = False
   for p in range(2, int(limit ** 0.5) + 1):
       if candidate[p]:
           for multiple in range(p * p, limit, p):
               candidate[multiple] = False
   primes = [n for n, keep in enumerate(candidate) if keep]
   print(primes)
   ```

3. **Check the count.** There are 15 primes below 50:

   ```python
   primes = [n for n in range(50) if all(n % d for d in range(2, int(n ** 0.5) + 1)) and n > 1]
   len(primes)
   ```

Each block runs on its own in the sandbox, so each one defines what it needs.
"#;

const NO_PYTHON: &str = r#"sandgate sits between your chat client and the model, as an OpenAI-compatible base URL. It never runs the code the model writes. Instead:

1. It finds each Python code block in the answer as it streams.
2. It adds a **▶ Run in sandbox** link that carries the code itself, compressed, in the URL's fragment (`#py=...`). The fragment never reaches any server.
3. When you open the link, the sandbox page runs the code with **Pyodide** (CPython compiled to WebAssembly) in a worker inside your browser.

What keeps you safe:

- **WebAssembly and the browser's sandbox**: the code cannot touch your files, your shell or other processes.
- **A strict Content-Security-Policy**: the page may only load Pyodide and its packages, and it holds no secrets or cookies to steal.
- **Its own origin**: serve the sandbox from a host name of its own, apart from your chat UI, so code in it cannot reach the chat's cookies or storage.
- **A timeout**: a runaway loop is stopped after 30 seconds and a fresh worker is started.

Code in other languages is left alone, for example:

```bash
curl http://127.0.0.1:8787/healthz
```
"#;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_example_prompt_selects_its_own_answer() {
        for canned in ANSWERS {
            assert_eq!(
                canned_for(canned.prompt).map(|c| c.name),
                Some(canned.name),
                "prompt {:?}",
                canned.prompt
            );
        }
    }

    #[test]
    fn unknown_prompts_get_the_default_answer() {
        assert_eq!(answer_for("hello there"), DEFAULT);
        assert_eq!(answer_for(""), DEFAULT);
    }

    #[test]
    fn keywords_ignore_case() {
        assert_eq!(answer_for("PLOTLY please"), PLOTLY);
        assert_eq!(answer_for("a Matplotlib figure"), MATPLOTLIB);
    }

    #[test]
    fn fibonacci_prompts_call_python_with_the_code_of_the_answer() {
        assert_eq!(python_call_for("What is the 20th FIBONACCI number?"), Some(FIBONACCI_CODE));
        assert_eq!(python_call_for("primes please"), None);
        assert_eq!(canned_for("what is the 20th fibonacci number?").unwrap().name, "fibonacci");
        // The call runs the same code the answer without the tool shows.
        let block = FIBONACCI.split("```python\n").nth(1).unwrap().split("```").next().unwrap();
        assert_eq!(block, FIBONACCI_CODE);
    }

    #[test]
    fn a_tool_result_is_answered_with_its_first_line() {
        assert_eq!(answer_to_tool_result("6765\n"), "The code printed: 6765");
        assert_eq!(answer_to_tool_result("\n  \r\n6765  \nmore\n"), "The code printed: 6765");
        assert_eq!(answer_to_tool_result(""), "The code printed: ");
    }

    #[test]
    fn python_block_counts_match_the_markdown() {
        for canned in ANSWERS {
            let opening = canned.markdown.lines().filter(|l| l.trim_start() == "```python").count();
            assert_eq!(opening, canned.python_blocks, "answer {}", canned.name);
        }
    }
}
