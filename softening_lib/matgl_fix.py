"""Fix for a message-direction bug of matgl 4.x (PyG-only) with the published matgl weights.

What is wrong
-------------
matgl's pretrained M3GNet and TensorNet weights were trained with message passing in which
the node that *receives* a message sits in the second slot of the pair features (DGL's
``update_all(..., fn.sum)`` accumulates on the destination node). matgl 4.1.2, which dropped
DGL, puts the receiving node in the first slot in two places:

* ``M3GNetGraphConv.node_update_`` builds ``[v_src, v_dst, e]`` and scatters onto ``src``;
* ``TensorEmbedding.message`` builds ``[z_src, z_dst]`` and the embedding scatters onto ``src``.

For a crystal whose atoms are all equivalent (fcc Cu, diamond Si, hcp Mg) both orders give the
same numbers, so elements look right; for compounds they do not. Measured here with the
mirrored weights (eV/atom, unpatched -> patched; MP PBE in brackets): M3GNet-MP MgO
-2.11 -> -5.95 (-5.96), LiF +1.07 -> -4.83 (-4.86); TensorNet-MatPES MgO -2.30 -> -5.86.
CHGNet's PyG port in the same file already scatters onto the destination ("matching DGL fn.sum
semantics"), which is the convention restored here. ``tests/test_matgl_fix.py`` checks the
patched models against DFT energies of real compounds.

``apply()`` is idempotent and is called by every matgl code path of this package (registry
calculators, fine-tuning). It only touches the matgl versions listed in ``AFFECTED``; for any
other version it does nothing, so an upstream fix is never double-applied.
"""

from __future__ import annotations

import logging

log = logging.getLogger(__name__)

AFFECTED = ("4.",)  # matgl versions (prefixes) whose PyG port has the reversed direction
_applied = False
_originals: dict = {}


def is_affected(version: str) -> bool:
    return any(version.startswith(p) for p in AFFECTED)


def _m3gnet_node_update(self, edge_index, edge_feat, node_feat, rbf, u_per_edge, num_nodes):
    """M3GNet Eq. 5 with the receiving atom second: sum_{i->j} phi(v_i, v_j, e_ij) onto j."""
    import torch
    from matgl.layers._graph_convolution import scatter_add

    src, dst = edge_index[0], edge_index[1]
    parts = [node_feat[src], node_feat[dst], edge_feat]
    if self.include_state:
        assert u_per_edge is not None
        parts.append(u_per_edge)
    mess = self.node_update_func(torch.hstack(parts)) * self.node_weight_func(rbf)
    return scatter_add(mess, dst, dim_size=num_nodes, dim=0)


def apply() -> bool:
    """Patch matgl in place when its version is affected; returns True when patched."""
    global _applied
    if _applied:
        return True
    import matgl

    if not is_affected(matgl.__version__):
        return False
    from matgl.layers import _embedding, _graph_convolution

    conv = _graph_convolution.M3GNetGraphConv
    emb = _embedding.TensorEmbedding
    original_message = emb.message

    def tensor_message(self, x_i, x_j, *args, **kw):
        # the embedding aggregates on edge_index[0]; the trained weights expect that atom second
        return original_message(self, x_j, x_i, *args, **kw)

    tensor_message.__doc__ = "TensorNet embedding message with the receiving atom second (softening_lib fix)."
    _originals.update(node_update_=conv.node_update_, message=original_message)
    conv.node_update_ = _m3gnet_node_update
    emb.message = tensor_message
    _applied = True
    log.info("matgl %s: applied the message-direction fix (softening_lib.matgl_fix)", matgl.__version__)
    return True


def revert() -> None:
    """Undo ``apply()`` (for tests that show what the bug does)."""
    global _applied
    if not _applied:
        return
    from matgl.layers import _embedding, _graph_convolution

    _graph_convolution.M3GNetGraphConv.node_update_ = _originals["node_update_"]
    _embedding.TensorEmbedding.message = _originals["message"]
    _applied = False


def describe() -> str:
    """One line for run records and the what-ran page."""
    try:
        import matgl
    except ImportError:
        return "matgl not installed"
    if _applied:
        return f"matgl {matgl.__version__} with softening_lib.matgl_fix (message direction restored)"
    if is_affected(matgl.__version__):
        return f"matgl {matgl.__version__} UNPATCHED (compound energies wrong; call matgl_fix.apply())"
    return f"matgl {matgl.__version__} (not affected)"
