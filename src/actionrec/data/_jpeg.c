/* Decode one region of a JPEG with libjpeg-turbo, straight into a caller's buffer.
 *
 * A frame-folder training sample keeps only a crop of each frame. libjpeg-turbo can skip the
 * inverse DCT, upsampling and colour conversion outside a region (jpeg_crop_scanline,
 * jpeg_skip_scanlines) and stop after the region's last row; OpenCV's imdecode cannot. The
 * region's pixels equal a full decode's: the region asked of libjpeg is widened by two
 * pixels on each side (clipped to the image), so fancy chroma upsampling sees the same
 * neighbours it sees in a full decode, and only the wanted columns are copied out.
 *
 * Python API (see actionrec.data.jpeg, which falls back to OpenCV when this is not built):
 *   read_header(data) -> (height, width, components, has_exif)
 *   decode_region(data, out, x, y, width, height) -> (libjpeg warnings, image height, width)
 * `out` is a writable C-contiguous buffer of height * width * 3 bytes that receives RGB rows.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <setjmp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jpeglib.h>

#define CONTEXT_PIXELS 2

typedef struct {
    struct jpeg_error_mgr pub;
    jmp_buf jump;
    char message[JMSG_LENGTH_MAX];
} ErrorManager;

static void on_error(j_common_ptr cinfo) {
    ErrorManager *err = (ErrorManager *)cinfo->err;
    (*cinfo->err->format_message)(cinfo, err->message);
    longjmp(err->jump, 1);
}

/* Warnings are counted (pub.num_warnings), never printed. */
static void on_message(j_common_ptr cinfo, int level) {
    if (level < 0) cinfo->err->num_warnings++;
}

static void init_errors(struct jpeg_decompress_struct *cinfo, ErrorManager *err) {
    cinfo->err = jpeg_std_error(&err->pub);
    err->pub.error_exit = on_error;
    err->pub.emit_message = on_message;
    err->message[0] = '\0';
}

static int has_exif_marker(struct jpeg_decompress_struct *cinfo) {
    for (jpeg_saved_marker_ptr m = cinfo->marker_list; m != NULL; m = m->next) {
        if (m->marker == JPEG_APP0 + 1 && m->data_length >= 6 && memcmp(m->data, "Exif\0\0", 6) == 0)
            return 1;
    }
    return 0;
}

/* Point cinfo at the encoded bytes and read the header, keeping the APP1 markers' first bytes
   (enough to tell EXIF). Errors longjmp through cinfo's error manager. */
static void read_header_of(struct jpeg_decompress_struct *cinfo, const Py_buffer *src) {
    jpeg_mem_src(cinfo, (const unsigned char *)src->buf, (unsigned long)src->len);
    jpeg_save_markers(cinfo, JPEG_APP0 + 1, 6);
    jpeg_read_header(cinfo, TRUE);
}

static PyObject *read_header(PyObject *self, PyObject *args) {
    Py_buffer src;
    if (!PyArg_ParseTuple(args, "y*", &src)) return NULL;
    struct jpeg_decompress_struct cinfo;
    ErrorManager err;
    int ok = 0, height = 0, width = 0, components = 0, exif = 0;
    init_errors(&cinfo, &err);
    jpeg_create_decompress(&cinfo);
    if (setjmp(err.jump) == 0) {
        read_header_of(&cinfo, &src);
        height = (int)cinfo.image_height;
        width = (int)cinfo.image_width;
        components = cinfo.num_components;
        exif = has_exif_marker(&cinfo);
        ok = 1;
    }
    jpeg_destroy_decompress(&cinfo);
    PyBuffer_Release(&src);
    if (!ok) return PyErr_Format(PyExc_ValueError, "not a readable JPEG: %s", err.message);
    return Py_BuildValue("(iiiO)", height, width, components, exif ? Py_True : Py_False);
}

static PyObject *decode_region(PyObject *self, PyObject *args) {
    Py_buffer src, dst;
    int x, y, width, height;
    if (!PyArg_ParseTuple(args, "y*w*iiii", &src, &dst, &x, &y, &width, &height)) return NULL;
    if (x < 0 || y < 0 || width < 1 || height < 1 || dst.len < (Py_ssize_t)width * height * 3 ||
        !PyBuffer_IsContiguous(&dst, 'C')) {
        PyBuffer_Release(&src);
        PyBuffer_Release(&dst);
        return PyErr_Format(PyExc_ValueError,
                            "bad region %dx%d at (%d, %d) or output buffer of %zd bytes", width,
                            height, x, y, dst.len);
    }
    struct jpeg_decompress_struct cinfo;
    ErrorManager err;
    unsigned char *volatile row = NULL;
    volatile int ok = 0, outside = 0;
    int warnings = 0;
    volatile int image_height = 0, image_width = 0;
    init_errors(&cinfo, &err);
    Py_BEGIN_ALLOW_THREADS;
    jpeg_create_decompress(&cinfo);
    if (setjmp(err.jump) == 0) {
        read_header_of(&cinfo, &src);
        image_height = (int)cinfo.image_height;
        image_width = (int)cinfo.image_width;
        cinfo.out_color_space = JCS_EXT_RGB;
        jpeg_start_decompress(&cinfo);
        if (has_exif_marker(&cinfo)) {
            strcpy(err.message, "EXIF orientation is OpenCV's to apply");
        } else if ((JDIMENSION)(x + width) > cinfo.output_width ||
            (JDIMENSION)(y + height) > cinfo.output_height) {
            outside = 1;
        } else {
            /* Widen the columns for the upsampler's context; libjpeg aligns the left edge
             * down to an iMCU boundary and reports what it will decode. */
            JDIMENSION left = x > CONTEXT_PIXELS ? (JDIMENSION)(x - CONTEXT_PIXELS) : 0;
            JDIMENSION right = (JDIMENSION)(x + width + CONTEXT_PIXELS);
            if (right > cinfo.output_width) right = cinfo.output_width;
            JDIMENSION span = right - left;
            if (left > 0 || span < cinfo.output_width) jpeg_crop_scanline(&cinfo, &left, &span);
            size_t skip = (size_t)(x - (int)left) * 3;
            row = (unsigned char *)malloc((size_t)span * 3);
            if (row == NULL) {
                strcpy(err.message, "out of memory");
            } else {
                if (y > 0) jpeg_skip_scanlines(&cinfo, (JDIMENSION)y);
                unsigned char *out = (unsigned char *)dst.buf;
                for (int r = 0; r < height; r++) {
                    JSAMPROW rows[1] = {row};
                    if (jpeg_read_scanlines(&cinfo, rows, 1) != 1) break;
                    memcpy(out + (size_t)r * width * 3, row + skip, (size_t)width * 3);
                    if (r == height - 1) ok = 1;
                }
                if (!ok) strcpy(err.message, "fewer rows than the header says");
            }
        }
        /* Rows below the region are never decoded: the decompressor is destroyed here. */
    }
    warnings = (int)cinfo.err->num_warnings;
    jpeg_destroy_decompress(&cinfo);
    Py_END_ALLOW_THREADS;
    free(row);
    PyBuffer_Release(&src);
    PyBuffer_Release(&dst);
    if (outside)
        return PyErr_Format(PyExc_ValueError, "region %dx%d at (%d, %d) is outside the image",
                            width, height, x, y);
    if (!ok) return PyErr_Format(PyExc_ValueError, "not a decodable JPEG: %s", err.message);
    return Py_BuildValue("(iii)", warnings, image_height, image_width);
}

static PyMethodDef methods[] = {
    {"read_header", read_header, METH_VARARGS,
     "read_header(data) -> (height, width, components, has_exif)"},
    {"decode_region", decode_region, METH_VARARGS,
     "decode_region(data, out, x, y, width, height) -> (warnings, image height, image width)"},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "_jpeg", "Region decoding of JPEGs with libjpeg-turbo.", -1, methods,
};

PyMODINIT_FUNC PyInit__jpeg(void) {
    PyObject *m = PyModule_Create(&module);
    if (m != NULL) PyModule_AddIntConstant(m, "JPEG_LIB_VERSION", JPEG_LIB_VERSION);
    return m;
}
