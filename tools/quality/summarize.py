"""Tables of the DIP-DKP quality study (tools/quality/run.sh) as BENCHMARKS.md shows them.

Usage: python3 tools/quality/summarize.py OUT [RELEASED_DIR]
  OUT/dkp/x{sf}_s{seed}/NAME_report.json  one dkp run: the default (moving-average) output in
                                          psnr/ssim/kernel_psnr, the last step (= --faithful)
                                          in last_step, USRNet refinement in refined
  OUT/torch/x{sf}_s{seed}/NAME.json       the PyTorch rebuild tools/reference/dipdkp_torch.py
  RELEASED_DIR/c{crop}x{sf}_s{seed}/*.json the released code (../shared/reference/released_dipdkp,
                                          run_one.py --prefix c{crop}x{sf} --np_seed seed)
Each method's cell is the mean over images of the seed mean, +- the std over seeds of the image
mean (population std); n = number of seeds that have all images. A second table gives every
image's seed mean for the default and the faithful output (the "no image loses > 0.1 dB" check),
and a third the curves' shape from the logs: the best logged step of the last-step and averaged
outputs (an oracle no user has; it shows what a selection rule could at most gain).
"""
import glob, json, os, re, sys
from statistics import mean, pstdev

out = sys.argv[1]
released = sys.argv[2] if len(sys.argv) > 2 else None
runs = {}  # (method, sf) -> {seed: {image: (psnr, ssim, kpsnr)}}
curves = {}  # (sf, seed, image) -> logs


def put(method, sf, seed, image, p, s, k):
    if p is None:
        return
    runs.setdefault((method, sf), {}).setdefault(seed, {})[image] = (p, s, k)


for f in glob.glob(os.path.join(out, 'dkp', 'x*_s*', '*_report.json')):
    sf, seed = map(int, re.search(r'x(\d+)_s(\d+)', f).groups())
    r = json.load(open(f))
    name = os.path.basename(f)[:-len('_report.json')]
    put('default (EMA)' if r.get('output') == 'ema' else 'faithful', sf, seed, name,
        r['psnr'], r['ssim'], r['kernel_psnr'])
    if r.get('last_step'):
        ls = r['last_step']
        put('faithful', sf, seed, name, ls['psnr'], ls['ssim'], ls['kernel_psnr'])
    if r.get('refined'):
        put('default + USRNet', sf, seed, name, r['refined']['psnr'], r['refined']['ssim'], None)
    curves[(sf, seed, name)] = r['logs']
for f in glob.glob(os.path.join(out, 'torch', 'x*_s*', '*.json')):
    sf, seed = map(int, re.search(r'x(\d+)_s(\d+)', f).groups())
    r = json.load(open(f))
    put('PyTorch rebuild', sf, seed, r['image'], r['psnr'], r['ssim'], r['kernel_psnr'])
if released:
    for f in glob.glob(os.path.join(released, 'c*x*_s*', '*.json')):
        sf, seed = map(int, re.search(r'x(\d+)_s(\d+)', os.path.dirname(f)).groups())
        r = json.load(open(f))
        put('released code', sf, seed, r['name'], r['psnr_y'], r['ssim'], r['kernel_psnr'])

images = sorted({i for v in runs.values() for s in v.values() for i in s})
scales = sorted({sf for _, sf in runs})
methods = ['released code', 'PyTorch rebuild', 'faithful', 'default (EMA)', 'default + USRNet']


def common_images(sf):
    """The images every method present at scale sf has for at least one seed: means compare
    like with like while a study is still partial."""
    sets = [set().union(*v.values()) for (m, f), v in runs.items() if f == sf and v]
    return sorted(set.intersection(*sets)) if sets else []


def cell(method, sf, col):
    imgs = common_images(sf)
    seeds = {s: v for s, v in runs.get((method, sf), {}).items() if set(v) >= set(imgs)}
    if not seeds or not imgs:
        return '-', 0
    if any(v[i][col] is None for v in seeds.values() for i in imgs):
        return '-', len(seeds)
    per_seed = [mean(v[i][col] for i in imgs) for v in seeds.values()]
    d = 3 if col == 1 else 2
    return f'{mean(per_seed):.{d}f} ± {pstdev(per_seed):.{d}f}', len(seeds)


for sf in scales:
    print(f'x{sf} table images: {", ".join(common_images(sf))}')
print()
print('| method | ' + ' | '.join(f'x{sf} PSNR_Y | x{sf} SSIM | x{sf} kernel PSNR | x{sf} n'
                                   for sf in scales) + ' |')
print('|---' * (1 + 4 * len(scales)) + '|')
for m in methods:
    cells = []
    for sf in scales:
        c = [cell(m, sf, col) for col in range(3)]
        cells += [c[0][0], c[1][0], c[2][0], str(c[0][1])]
    print(f'| {m} | ' + ' | '.join(cells) + ' |')


def seed_mean(method, sf, image):
    v = [s[image][0] for s in runs.get((method, sf), {}).values() if image in s]
    return (mean(v), len(v)) if v else (None, 0)


print('\nPer image, PSNR_Y seed mean (n seeds): released / faithful / default / default - faithful')
for sf in scales:
    for i in images:
        r, f, d = (seed_mean(m, sf, i) for m in ('released code', 'faithful', 'default (EMA)'))
        fmt = lambda x: '-' if x[0] is None else f'{x[0]:.2f} ({x[1]})'
        delta = '-' if f[0] is None or d[0] is None else f'{d[0] - f[0]:+.2f}'
        print(f'x{sf} {i:10s} {fmt(r):>12s} {fmt(f):>12s} {fmt(d):>12s} {delta:>7s}')

# Step-selection rules scored from the logs (the logged PSNR is of the float image at that step;
# the written PNG is quantized, a difference of ~0.01 dB). GT-free rules only look at lr_psnr*.
rules = {
    'select: best LR fit of the average': lambda ok: max(ok, key=lambda l: l['lr_psnr_ema'])['psnr_ema'],
    'select: best LR fit of the step': lambda ok: max(ok, key=lambda l: l['lr_psnr'])['psnr'],
    'oracle: best logged average (uses GT)': lambda ok: max(l['psnr_ema'] for l in ok),
    'oracle: best logged step (uses GT)': lambda ok: max(l['psnr'] for l in ok),
}
print('\nPSNR_Y by step-selection rule, mean over images (seed, n images): rule / faithful / default')
for sf in scales:
    for seed in sorted({k[1] for k in curves if k[0] == sf}):
        sel = {i: [l for l in logs if l.get('psnr') is not None and l.get('psnr_ema') is not None]
               for (f, s, i), logs in curves.items() if f == sf and s == seed}
        sel = {i: ok for i, ok in sel.items() if ok}
        if not sel:
            continue
        base = runs.get(('faithful', sf), {}).get(seed, {})
        dflt = runs.get(('default (EMA)', sf), {}).get(seed, {})
        for name, rule in rules.items():
            v = mean(rule(ok) for ok in sel.values())
            f = mean(base[i][0] for i in sel if i in base) if all(i in base for i in sel) else float('nan')
            d = mean(dflt[i][0] for i in sel if i in dflt) if all(i in dflt for i in sel) else float('nan')
            print(f'x{sf} s{seed} (n={len(sel)}) {name:40s} {v:.2f} / {f:.2f} / {d:.2f}')

print('\nCurves (logged every N steps): final / best logged step (step) for the last-step and '
      'averaged outputs')
for (sf, seed, i), logs in sorted(curves.items()):
    ok = [l for l in logs if l.get('psnr') is not None and l.get('psnr_ema') is not None]
    if not ok:
        continue
    b = max(ok, key=lambda l: l['psnr'])
    be = max(ok, key=lambda l: l['psnr_ema'])
    print(f'x{sf} s{seed} {i:10s} last {ok[-1]["psnr"]:.2f} / {b["psnr"]:.2f} ({b["step"]})   '
          f'ema {ok[-1]["psnr_ema"]:.2f} / {be["psnr_ema"]:.2f} ({be["step"]})')

# How much of each PSNR is misregistration: blind SR may return an image shifted by a few
# pixels (the kernel's centre is ambiguous), which on small crops costs several dB. Interior
# PSNR_Y (8 px shaved) at zero shift and at the best integer shift within +-6 px.
import numpy as np
from PIL import Image


def y_of(path):
    a = np.asarray(Image.open(path).convert('RGB'), dtype=np.float64) / 255
    return 65.481 * a[..., 0] + 128.553 * a[..., 1] + 24.966 * a[..., 2] + 16


def registration(hr, sr, m=8, r=6):
    h, w = hr.shape
    a = hr[m:h - m, m:w - m]
    ps = {}
    for dy in range(-r, r + 1):
        for dx in range(-r, r + 1):
            b = sr[m + dy:h - m + dy, m + dx:w - m + dx]
            ps[(dy, dx)] = 10 * np.log10(255 ** 2 / np.mean((a - b) ** 2))
    best = max(ps, key=ps.get)
    return ps[(0, 0)], ps[best], best


print('\nRegistration (interior PSNR_Y at shift 0 / at the best shift (dy, dx)), seed 0 where present')
for sf in scales:
    for i in common_images(sf):
        hr_p = os.path.join(out, 'crops', f'x{sf}', 'hr', i + '.png')
        if not os.path.exists(hr_p):
            continue
        hr = y_of(hr_p)
        row = []
        for label, p in [
            ('released', released and glob.glob(os.path.join(released, f'c*x{sf}_s0', f'*_{i}_sr.png'))),
            ('torch', glob.glob(os.path.join(out, 'torch', f'x{sf}_s0', f'{i}_sr.png'))),
            ('dkp default', glob.glob(os.path.join(out, 'dkp', f'x{sf}_s0', f'{i}_sr.png'))),
        ]:
            if p:
                z, b, s = registration(hr, y_of(p[0]))
                row.append(f'{label} {z:.2f} / {b:.2f} {s}')
        print(f'x{sf} {i:10s} ' + '   '.join(row))
