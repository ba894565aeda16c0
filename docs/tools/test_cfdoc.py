"""test_cfdoc.py - the documentation generator on a made-up header that
uses every construct the convention allows (docs/README.md), and on the
ways a header can go wrong. Run by ctest (docs.generator) or as
`python3 -m unittest docs/tools/test_cfdoc.py`.
"""
import os
import shutil
import subprocess
import sys
import tempfile
import unittest

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import api  # noqa: E402
import cfdoc  # noqa: E402
import manpages  # noqa: E402
import manual  # noqa: E402
import markup  # noqa: E402

HEADER = r'''/* cfutures.h - a made-up header for the generator's tests.
 *
 * Conventions:
 * - Everything returns an int.
 */
#ifndef CFUTURES_H
#define CFUTURES_H
#define CF_API
CF_API int cf_before_any_banner(void);

#ifdef __cplusplus
extern "C" {
#endif

/* ------------------------------------------------------------------------ */
/* Widgets: the first part                                                  */

/* Widgets are made and freed.
 *
 * - One owner each.
 */

#define CF_ERROR_MAP(XX)                                        \
    XX(EINVAL, -1, "invalid argument")      /* ValueError */    \
    XX(ELONG, -2, "a message "                                   \
       "in two pieces")

typedef struct cf_widget cf_widget;

/* How a widget starts. */
typedef enum cf_start {
    /* Slowly, the default. */
    CF_START_SLOW = 0,
    CF_START_FAST = 1, /* quickly */
} cf_start;

typedef struct cf_widget_options {
    /* Most parts. 0: eight. */
    int max_parts;
    cf_start start;
    union {
        int a;
        double b;
    } u; /* either */
    int (*hook)(void *arg,
                int flags); /* runs first */
} cf_widget_options;

/* Makes a widget. Returns CF_OK or CF_EINVAL. */
CF_API int cf_widget_new(const cf_widget_options *opts, cf_widget **out);

/* The widget's state, without blocking. NULL gives false. */
CF_API bool cf_widget_idle(const cf_widget *w);
CF_API bool cf_widget_busy(const cf_widget *w); /* running now */

/* For widget authors. */

/* Sets the colour of `w` to `rgb`:
 *   CF_OK      it is set;
 *   CF_EINVAL  NULL `w`.
 * Example:
 *
 *     cf_widget_paint(w, 0xff0000);
 */
CF_API int cf_widget_paint(cf_widget *w, unsigned rgb);

#if defined(__GNUC__)
/* Frees `*w`; for cleanup attributes. */
CF_API void cf_widget_freep(cf_widget **w);
#define CF_SCOPED_WIDGET __attribute__((cleanup(cf_widget_freep))) cf_widget *
#endif

/* Twice `x`, inline. */
static inline int cf_twice(int x)
{
    return 2 * x;
}

/* ------------------------------------------------------------------------ */
/* Gadgets                                                                  */

CF_API int cf_gadget_undocumented(void);

/* Runs the gadget. Blocks. */
CF_API int cf_gadget_run(cf_widget *w,
                         int times) CF_PRINTF(1, 2);

#ifdef __cplusplus
}
#endif
#endif
'''


def make_root(header=HEADER, parts=None):
    root = tempfile.mkdtemp(prefix="cfdoc-test-")
    os.makedirs(os.path.join(root, "include"))
    os.makedirs(os.path.join(root, "docs", "manual", "parts"))
    os.makedirs(os.path.join(root, "examples"))
    with open(os.path.join(root, "include", "cfutures.h"), "w") as fp:
        fp.write(header)
    here = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    shutil.copy(os.path.join(here, "manual", "style.css"),
                os.path.join(root, "docs", "manual"))
    for name, text in (parts or {}).items():
        with open(os.path.join(root, "docs", "manual", "parts", name),
                  "w") as fp:
            fp.write(text)
    with open(os.path.join(root, "examples", "demo.c"), "w") as fp:
        fp.write("/* demo.c - a widget made and freed.\n *\n * More.\n */\n"
                 "int main(void) { cf_widget *w; cf_widget_new(0, &w); }\n")
    return root


class Parse(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.root = make_root()
        cls.api = api.Api(cls.root)
        cls.h = cls.api.headers[0]

    @classmethod
    def tearDownClass(cls):
        shutil.rmtree(cls.root)

    def group(self, name):
        return self.api.group_of[name]

    def test_sections_intro_and_titles(self):
        self.assertEqual([s.title for s in self.h.sections],
                         ["Widgets: the first part", "Gadgets"])
        self.assertEqual(self.h.sections[0].key, "widgets")
        self.assertIn("One owner each", self.h.sections[0].intro)
        self.assertTrue(self.h.intro.startswith("cfutures.h - a made-up"))

    def test_declarations_before_the_first_banner_are_not_read(self):
        self.assertNotIn("cf_before_any_banner", self.api.decls)

    def test_a_comment_and_the_declarations_after_it_form_one_group(self):
        g = self.group("cf_widget_idle")
        self.assertEqual(g.names, ["cf_widget_idle", "cf_widget_busy"])
        self.assertEqual(self.api.decls["cf_widget_busy"].note, "running now")
        self.assertEqual(self.api.summary(g), "the widget's state, "
                         "without blocking")

    def test_a_free_comment_leads_the_groups_after_it(self):
        self.assertEqual(self.group("cf_widget_paint").lead,
                         "For widget authors.")
        self.assertEqual(self.group("cf_widget_new").lead, "")

    def test_struct_fields_with_nested_union_and_function_pointer(self):
        d = self.api.decls["cf_widget_options"]
        self.assertEqual([f.name for f in d.fields],
                         ["max_parts", "start", "u", "hook"])
        docs = {f.name: f.doc for f in d.fields}
        self.assertEqual(docs["max_parts"], "Most parts. 0: eight.")
        self.assertEqual(docs["u"], "either")
        self.assertEqual(docs["hook"], "runs first")

    def test_enum_values_with_comments_above_and_beside(self):
        d = self.api.decls["cf_start"]
        self.assertEqual([(f.name, f.doc) for f in d.fields],
                         [("CF_START_SLOW", "Slowly, the default."),
                          ("CF_START_FAST", "quickly")])

    def test_error_table_rows(self):
        self.assertEqual(self.api.codes["CF_EINVAL"],
                         ("-1", "invalid argument", "ValueError"))
        self.assertEqual(self.api.codes["CF_ELONG"][1],
                         "a message in two pieces")

    def test_conditional_function_and_its_macro(self):
        g = self.group("cf_widget_freep")
        self.assertEqual(g.names, ["cf_widget_freep", "CF_SCOPED_WIDGET"])

    def test_inline_function_is_a_documented_function(self):
        d = self.api.decls["cf_twice"]
        self.assertTrue(d.api)
        self.assertEqual(d.signature, "static inline int cf_twice(int x);")
        self.assertIn("cf_gadget_run", self.api.decls)  # read past its body

    def test_attribute_macros_leave_the_signature(self):
        self.assertEqual(self.api.decls["cf_gadget_run"].signature,
                         "int cf_gadget_run(cf_widget *w, int times);")

    def test_a_page_shows_the_types_its_declarations_use(self):
        g = self.group("cf_widget_new")
        self.assertEqual([t.name for t in self.api.types_used(g)],
                         ["cf_widget_options", "cf_start"])
        self.assertIs(self.api.page_of["cf_start"], g)

    def test_comment_blocks(self):
        blocks = markup.parse_comment(self.group("cf_widget_paint").doc)
        self.assertEqual([b[0] for b in blocks], ["p", "dl", "p", "code"])
        self.assertEqual(blocks[1][1][1], ("CF_EINVAL", "NULL `w`."))
        self.assertEqual(blocks[3][1], "cf_widget_paint(w, 0xff0000);")


class OtherHeaders(unittest.TestCase):
    def test_another_headers_opening_comment_introduces_its_first_part(self):
        root = make_root()
        try:
            with open(os.path.join(root, "include", "cfutures_x.h"),
                      "w") as fp:
                fp.write("/* cfutures_x.h - the X library: widgets far "
                         "away.\n *\n * Link with cfutures_x.\n */\n"
                         "#define CF_X_API\n\n"
                         "/* " + "-" * 72 + " */\n/* Far widgets */\n\n"
                         "/* Sends a widget. Returns CF_OK. */\n"
                         "CF_X_API int cf_x_send(void);\n")
            a = api.Api(root)
            self.assertEqual(a.headers[0].name, "cfutures.h")
            first = a.headers[1].sections[0]
            self.assertTrue(first.intro.startswith("The X library: "),
                            first.intro)
            self.assertIn("Link with cfutures_x.", first.intro)
            # cfutures.h keeps its opening comment for the model alone.
            self.assertNotIn("made-up header", a.headers[0].sections[0].intro)
        finally:
            shutil.rmtree(root)


class Check(unittest.TestCase):
    def test_undocumented_and_unread_functions_are_problems(self):
        root = make_root()
        try:
            found = cfdoc.problems(api.Api(root), ["cf_widget_new",
                                                   "cf_hidden"])
        finally:
            shutil.rmtree(root)
        text = "\n".join(found)
        self.assertIn("cf_gadget_undocumented has no contract comment", text)
        self.assertIn("cf_before_any_banner", text)  # not read
        self.assertIn("exported symbol cf_hidden has no man page", text)
        self.assertEqual(len(found), 3, text)

    def test_the_real_headers_pass(self):
        root = os.path.dirname(os.path.dirname(os.path.dirname(
            os.path.abspath(__file__))))
        self.assertEqual(cfdoc.problems(api.Api(root)), [])


class Output(unittest.TestCase):
    def setUp(self):
        self.root = make_root(parts={"10-widgets.md": (
            "<!-- sections: Widgets -->\n# Widget guide\n\nWidgets first."
            "\n\n## Make one\n\nSee `cf_widget_new`.\n")})
        self.api = api.Api(self.root)
        self.out = tempfile.mkdtemp(prefix="cfdoc-out-")

    def tearDown(self):
        shutil.rmtree(self.root)
        shutil.rmtree(self.out)

    def test_man_pages_links_and_lint(self):
        pages, links = manpages.write_all(self.api, "# M\n\n## Objects\n\n"
                                          "Text.\n", self.out, "2026-01-01")
        man3 = os.path.join(self.out, "man3")
        self.assertEqual(os.readlink(os.path.join(man3, "cf_widget_busy.3")),
                         "cf_widget_idle.3")
        self.assertEqual(os.readlink(os.path.join(man3, "cf_start.3")),
                         "cf_widget_new.3")
        with open(os.path.join(man3, "cf_widget_new.3")) as fp:
            page = fp.read()
        self.assertIn(".SH NOTES", page)        # the section's intro
        self.assertIn("\\fBmax_parts\\fP", page)  # the options' fields
        for tool in (["mandoc", "-Tlint"], ["groff", "-ww", "-z", "-man"]):
            if shutil.which(tool[0]) is None:
                continue
            for sub in ("man3", "man7"):
                for f in os.listdir(os.path.join(self.out, sub)):
                    r = subprocess.run(tool + [os.path.join(self.out, sub, f)],
                                       capture_output=True, text=True)
                    self.assertEqual(r.stdout + r.stderr, "", f)
        # A name that disappears loses its page on the next run.
        self.api.pages.remove(self.api.group_of["cf_gadget_run"])
        del self.api.page_of["cf_gadget_run"]
        manpages.write_all(self.api, "", self.out, "2026-01-01")
        self.assertFalse(os.path.exists(os.path.join(man3,
                                                     "cf_gadget_run.3")))

    def test_manual_parts_claims_and_reference_only_pages(self):
        manual.write_all(self.api, self.root, self.out)
        names = sorted(os.listdir(self.out))
        self.assertIn("widgets.html", names)   # the hand-written part
        self.assertIn("gadgets.html", names)   # unclaimed: reference only
        self.assertIn("example-demo.html", names)
        with open(os.path.join(self.out, "widgets.html")) as fp:
            page = fp.read()
        self.assertIn('<h1>Widget guide</h1>', page)
        self.assertIn('id="cf_widget_busy"', page)
        self.assertIn('href="widgets.html#cf_widget_new"', page)
        self.assertIn('href="example-demo.html"', page)

    def test_manual_parts_go_by_their_number(self):
        for name, title in (("100-late.md", "Late"), ("9-early.md", "Early"),
                            ("90-middle.md", "Middle")):
            with open(os.path.join(self.root, "docs", "manual", "parts",
                                   name), "w") as fp:
                fp.write(f"<!-- sections: -->\n# {title}\n\nText.\n")
        m = manual.Manual(self.api, self.root)
        self.assertEqual([p.slug for p in m.parts],
                         ["early", "widgets", "middle", "late"])

    def test_manual_refuses_a_folder_it_did_not_write(self):
        with open(os.path.join(self.out, "precious.txt"), "w") as fp:
            fp.write("x")
        with self.assertRaises(SystemExit):
            manual.write_all(self.api, self.root, self.out)
        self.assertTrue(os.path.exists(os.path.join(self.out,
                                                    "precious.txt")))


if __name__ == "__main__":
    unittest.main()
