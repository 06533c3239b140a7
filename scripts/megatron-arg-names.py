#!/usr/bin/env python3
"""
The command-line flags a Megatron-LM checkout accepts, read from its source without importing it
(importing needs a recent PyTorch and CUDA libraries). Writes test/fixtures/megatron-lm-args.txt:

    python3 scripts/megatron-arg-names.py /path/to/Megatron-LM COMMIT > test/fixtures/megatron-lm-args.txt

Three sections:
- [pretrain_gpt.py]: megatron/training/arguments.py. Flags come from literal
  `add_argument('--flag', ...)` calls and from `ArgumentGroupFactory(SomeConfig, exclude=[...])`,
  which turns each dataclass field into `--field-name` (megatron/training/argument_utils.py: a bool
  field whose default is not False becomes `--no-field-name` and `--disable-field-name`; an
  `argparse_meta` with `arg_names` replaces the names; fields with init=False are skipped).
- [tools/checkpoint/convert.py --loader mixtral_hf --saver core]: the literal flags of convert.py,
  loader_mixtral_hf.py and saver_core.py.
- [tools/preprocess_data.py]: its literal flags and the tokenizer flags it takes from arguments.py.
"""
import ast
import sys
from pathlib import Path


def literal_flags(tree):
    """'--x' strings passed positionally to any *.add_argument(...) call."""
    out = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == 'add_argument':
            for a in node.args:
                if isinstance(a, ast.Constant) and isinstance(a.value, str) and a.value.startswith('--'):
                    out.add(a.value)
    return out


def find_classes(root):
    """Every top-level class definition under megatron/, by name: [(path, ClassDef)]."""
    classes = {}
    for path in sorted((root / 'megatron').rglob('*.py')):
        try:
            tree = ast.parse(path.read_text(encoding='utf-8'))
        except (SyntaxError, UnicodeDecodeError):
            continue
        for node in tree.body:
            if isinstance(node, ast.ClassDef):
                classes.setdefault(node.name, []).append((path, node))
    return classes


def const(node):
    try:
        return ast.literal_eval(node)
    except (ValueError, TypeError, SyntaxError, RecursionError):
        return '<expr>'


def is_bool(annotation):
    """bool, Optional[bool], bool | None (argument_utils.py _extract_type unwraps Optional)."""
    if isinstance(annotation, ast.Name):
        return annotation.id == 'bool'
    if isinstance(annotation, ast.Constant) and isinstance(annotation.value, str):
        return is_bool(ast.parse(annotation.value, mode='eval').body)
    if isinstance(annotation, ast.BinOp) and isinstance(annotation.op, ast.BitOr):
        other = annotation.right
        return isinstance(other, ast.Constant) and other.value is None and is_bool(annotation.left)
    if isinstance(annotation, ast.Subscript) and isinstance(annotation.value, (ast.Name, ast.Attribute)):
        name = annotation.value.id if isinstance(annotation.value, ast.Name) else annotation.value.attr
        if name == 'Optional':
            return is_bool(annotation.slice)
    return False


def dataclass_fields(name, classes, module_hint=None):
    """(field name, annotation, default, init, arg_names) of a dataclass and its dataclass bases."""
    candidates = classes.get(name, [])
    if module_hint:
        hinted = [c for c in candidates if module_hint in str(c[0])]
        candidates = hinted or candidates
    if not candidates:
        raise SystemExit(f'class {name} not found')
    _, node = candidates[0]
    fields = []
    for base in node.bases:
        if isinstance(base, ast.Name) and base.id in classes:
            fields += dataclass_fields(base.id, classes)
    for stmt in node.body:
        if not (isinstance(stmt, ast.AnnAssign) and isinstance(stmt.target, ast.Name)):
            continue
        ann = ast.unparse(stmt.annotation)
        if ann.startswith('ClassVar') or ann.startswith('InitVar'):
            continue
        default, init, arg_names = None, True, None
        v = stmt.value
        if isinstance(v, ast.Call) and isinstance(v.func, ast.Name) and v.func.id == 'field':
            for kw in v.keywords:
                if kw.arg == 'default':
                    default = const(kw.value)
                elif kw.arg == 'init':
                    init = const(kw.value)
                elif kw.arg == 'metadata' and isinstance(kw.value, ast.Dict):
                    for k, mv in zip(kw.value.keys, kw.value.values):
                        if isinstance(k, ast.Constant) and k.value == 'argparse_meta' and isinstance(mv, ast.Dict):
                            for mk, mvv in zip(mv.keys, mv.values):
                                if isinstance(mk, ast.Constant) and mk.value == 'arg_names':
                                    arg_names = const(mvv)
        elif v is not None:
            default = const(v)
        fields = [f for f in fields if f[0] != stmt.target.id]
        fields.append((stmt.target.id, stmt.annotation, default, init, arg_names))
    return fields


def factory_flags(tree, classes, only=None):
    """Flags of each ArgumentGroupFactory(Config, exclude=...) call in arguments.py (in function `only`)."""
    out = set()
    for fn in ast.walk(tree):
        if not isinstance(fn, ast.FunctionDef) or (only is not None and fn.name != only):
            continue
        lists = {}
        for stmt in ast.walk(fn):
            if isinstance(stmt, ast.Assign) and len(stmt.targets) == 1 and isinstance(stmt.targets[0], ast.Name) and isinstance(stmt.value, ast.List):
                lists[stmt.targets[0].id] = const(stmt.value)
        for node in ast.walk(fn):
            if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == 'ArgumentGroupFactory'):
                continue
            cls = node.args[0].id
            exclude = []
            for kw in node.keywords:
                if kw.arg == 'exclude':
                    exclude = lists[kw.value.id] if isinstance(kw.value, ast.Name) else const(kw.value)
            for name, ann, default, init, arg_names in dataclass_fields(cls, classes):
                if name in exclude or init is False:
                    continue
                if arg_names:
                    out.update(arg_names)
                elif is_bool(ann) and default is not False:
                    out.update({'--no-' + name.replace('_', '-'), '--disable-' + name.replace('_', '-')})
                else:
                    out.add('--' + name.replace('_', '-'))
    return out


def main():
    root, commit = Path(sys.argv[1]), sys.argv[2]
    args_py = root / 'megatron/training/arguments.py'
    tree = ast.parse(args_py.read_text(encoding='utf-8'))
    classes = find_classes(root)
    pretrain = literal_flags(tree) | factory_flags(tree, classes)
    convert = set()
    for f in ['convert.py', 'loader_mixtral_hf.py', 'saver_core.py']:
        convert |= literal_flags(ast.parse((root / 'tools/checkpoint' / f).read_text(encoding='utf-8')))
    preprocess = literal_flags(ast.parse((root / 'tools/preprocess_data.py').read_text(encoding='utf-8'))) | factory_flags(tree, classes, '_add_tokenizer_args')
    print(f'# Megatron-LM (github.com/NVIDIA/Megatron-LM) commit {commit}')
    print('# Generated by scripts/megatron-arg-names.py from megatron/training/arguments.py (with the')
    print('# dataclass configs its ArgumentGroupFactory calls expand), tools/checkpoint/{convert,loader_mixtral_hf,saver_core}.py')
    print('# and tools/preprocess_data.py (with the tokenizer flags of arguments.py it adds).')
    print('# One flag per line; test/export/megatron-args.test.ts checks every flag the Megatron kit emits is here.')
    print('[pretrain_gpt.py]')
    for f in sorted(pretrain):
        print(f)
    print('[tools/checkpoint/convert.py --loader mixtral_hf --saver core]')
    for f in sorted(convert):
        print(f)
    print('[tools/preprocess_data.py]')
    for f in sorted(preprocess):
        print(f)


if __name__ == '__main__':
    main()
