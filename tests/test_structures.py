

def test_min_distance_fast_path_equals_ase_neighbour_list():
    """The brute-force small-cell path of _min_distance gives ASE's neighbour-list minimum."""
    import numpy as np
    from ase.build import bulk
    from ase.neighborlist import neighbor_list

    from softening_lib import structures

    rng = np.random.default_rng(1)
    checked = 0
    for i in range(60):
        a = bulk(["Cu", "NaCl", "Si"][i % 3] if i % 3 != 1 else "NaCl", ["fcc", "rocksalt", "diamond"][i % 3],
                 a=[3.6, 5.6, 5.4][i % 3]).repeat((1, 1, 1 + i % 2))
        shear = np.eye(3)
        shear[0, 1] = 0.9 * rng.random()
        a.set_cell(a.cell @ shear, scale_atoms=True)
        a.rattle(0.7, seed=i)
        for cut in (0.5, 1.5, 2.6):
            fast = structures._min_distance_small_cell(a, cut)
            if fast is None:
                continue
            _, _, d = neighbor_list("ijd", a, cut, self_interaction=False)
            ref = float(d.min()) if d.size else float("inf")
            assert fast[0] == ref or abs(fast[0] - ref) < 1e-9
            checked += 1
    assert checked > 100
