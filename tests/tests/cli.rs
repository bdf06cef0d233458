//! The binary starts and describes itself.

use vnode_tests::run_vnode;

#[test]
fn help_lists_the_subcommands() {
    let (code, stdout, _) = run_vnode(&["--help"]).unwrap();
    assert_eq!(code, 0);
    for sub in ["plugin", "eci-emulator", "apiserver", "dev"] {
        assert!(
            stdout.contains(sub),
            "`vnode --help` does not mention {sub}:\n{stdout}"
        );
    }
}

#[test]
fn unknown_subcommand_is_a_usage_error() {
    let (code, _, stderr) = run_vnode(&["frobnicate"]).unwrap();
    assert_eq!(code, 2, "{stderr}");
}
