"""A picture of an explanation: the user, the recommended item and the paths (networkx + matplotlib Agg)."""

from __future__ import annotations

import io

from graph.explain import Explanation

_COLORS = {"User": "#4e79a7", "Item": "#f28e2b", "Genre": "#59a14f", "Tag": "#76b7b2", "Category": "#edc948", "Brand": "#b07aa1"}
_EDGE_COLORS = {"collaborative": "#4e79a7", "content": "#59a14f", "semantic": "#e15759", "popularity": "#9c9c9c"}


def explanation_graph(exp: Explanation, user_id: str | None):  # type: ignore[no-untyped-def]
    """The union of the explanation paths as a ``networkx.MultiDiGraph``."""
    import networkx as nx

    g = nx.MultiDiGraph()
    for reason in exp.reasons:
        keys = []
        for n in reason.nodes:
            key = f"{n.label}:{n.key}"
            label = (n.title or n.key) if n.label == "Item" else (f"user {n.key}" if n.label == "User" and n.key != "*" else
                                                                 "all users" if n.key == "*" else n.key)
            if len(label) > 28:
                label = label[:26] + "…"
            g.add_node(key, kind=n.label, text=label)
            keys.append(key)
        for r in reason.rels:
            text = r.type
            if "rating" in r.properties and r.properties["rating"] is not None:
                text += f" {r.properties['rating']:g}"
            if "count" in r.properties:
                text = f"{r.properties['count']} × {r.type}"
            if "cosine" in r.properties:
                text = f"text cos {r.properties['cosine']:.2f}"
            if r.type == "NEIGHBOUR" and "w" in r.properties:
                text = f"NEIGHBOUR w {r.properties['w']:.3g}"
            g.add_edge(keys[r.start], keys[r.end], reason=reason.kind, text=text)
    return g


def explanation_png(exp: Explanation, user_id: str | None, dpi: int = 100) -> bytes:
    """Render ``exp`` as PNG bytes."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import networkx as nx

    g = explanation_graph(exp, user_id)
    fig, ax = plt.subplots(figsize=(9, 6), dpi=dpi)
    try:
        if g.number_of_nodes() == 0:
            ax.text(0.5, 0.5, exp.sentence, ha="center", va="center", wrap=True)
        else:
            pos = nx.spring_layout(nx.Graph(g), seed=7, k=1.2)
            colors = [_COLORS.get(g.nodes[n]["kind"], "#cccccc") for n in g.nodes]
            nx.draw_networkx_nodes(g, pos, ax=ax, node_color=colors, node_size=900, alpha=0.9)
            nx.draw_networkx_labels(g, pos, ax=ax, labels={n: g.nodes[n]["text"] for n in g.nodes}, font_size=8)
            for u, v, data in g.edges(data=True):
                nx.draw_networkx_edges(g, pos, ax=ax, edgelist=[(u, v)], edge_color=_EDGE_COLORS.get(data["reason"], "#333333"),
                                       arrows=True, arrowsize=12, width=1.6, node_size=900)
            edge_labels = {(u, v): d["text"] for u, v, d in g.edges(data=True)}
            nx.draw_networkx_edge_labels(nx.DiGraph(g), pos, edge_labels=edge_labels, ax=ax, font_size=7)
        ax.set_title("\n".join(_wrap(exp.sentence, 110)), fontsize=8)
        ax.axis("off")
        buf = io.BytesIO()
        fig.savefig(buf, format="png", bbox_inches="tight")
        return buf.getvalue()
    finally:
        plt.close(fig)


def _wrap(text: str, width: int) -> list[str]:
    import textwrap

    return textwrap.wrap(text, width) or [""]
