"""Pictures of what PAD changed: tokens shaded by reward, in a terminal or a web page.

```python
from langchain_pad.render import print_traces, render_html

print_traces(base_trace, pad_trace)                    # side by side, in the terminal
render_html(base_trace, pad_trace, path="pad.html")    # one self-contained HTML file
```

Each argument is a :class:`~langchain_pad.traces.RunTrace` (from a
``TokenRewardHandler``) or a finished message of ``PADChatModel`` (``invoke``, or the
sum of all stream chunks).
"""

from langchain_pad.render.html import render_html
from langchain_pad.render.terminal import print_traces, render_terminal

__all__ = ["print_traces", "render_html", "render_terminal"]
