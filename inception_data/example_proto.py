"""The tf.train.Example protobuf messages, without importing TensorFlow.

Why not `tensorflow.core.example.example_pb2`: importing it runs TensorFlow's package start-up,
about 2.7 s per process on this project's 2-core machines, paid again by every Beam worker
process that only needs to serialize records. These classes are built with protobuf's own
descriptor API from the same definitions as TensorFlow's example.proto / feature.proto, in a
private descriptor pool (so they never clash with TensorFlow's when both are loaded); the wire
format is identical, which tests/test_schema.py checks byte for byte against TensorFlow's classes.
"""

from google.protobuf import descriptor_pb2, descriptor_pool, message_factory

_F = descriptor_pb2.FieldDescriptorProto


def _field(message, name, number, kind, label=_F.LABEL_OPTIONAL, type_name=None, oneof=None):
    field = message.field.add(name=name, number=number, type=kind, label=label)
    if type_name:
        field.type_name = type_name
    if oneof is not None:
        field.oneof_index = oneof
    return field


def _file() -> descriptor_pb2.FileDescriptorProto:
    proto = descriptor_pb2.FileDescriptorProto(name="inception_data/example.proto",
                                               package="tensorflow", syntax="proto3")
    for name, kind in (("BytesList", _F.TYPE_BYTES), ("FloatList", _F.TYPE_FLOAT),
                       ("Int64List", _F.TYPE_INT64)):
        field = _field(proto.message_type.add(name=name), "value", 1, kind, _F.LABEL_REPEATED)
        if kind != _F.TYPE_BYTES:
            field.options.packed = True
    feature = proto.message_type.add(name="Feature")
    feature.oneof_decl.add(name="kind")
    for number, name in enumerate(("bytes_list", "float_list", "int64_list"), start=1):
        list_name = name.title().replace("_", "")
        _field(feature, name, number, _F.TYPE_MESSAGE, type_name=f".tensorflow.{list_name}",
               oneof=0)
    features = proto.message_type.add(name="Features")
    entry = features.nested_type.add(name="FeatureEntry")
    entry.options.map_entry = True
    _field(entry, "key", 1, _F.TYPE_STRING)
    _field(entry, "value", 2, _F.TYPE_MESSAGE, type_name=".tensorflow.Feature")
    _field(features, "feature", 1, _F.TYPE_MESSAGE, _F.LABEL_REPEATED,
           ".tensorflow.Features.FeatureEntry")
    example = proto.message_type.add(name="Example")
    _field(example, "features", 1, _F.TYPE_MESSAGE, type_name=".tensorflow.Features")
    return proto


_POOL = descriptor_pool.DescriptorPool()
_POOL.Add(_file())


def _class(name):
    return message_factory.GetMessageClass(_POOL.FindMessageTypeByName(f"tensorflow.{name}"))


Example = _class("Example")
Features = _class("Features")
Feature = _class("Feature")
BytesList = _class("BytesList")
FloatList = _class("FloatList")
Int64List = _class("Int64List")
